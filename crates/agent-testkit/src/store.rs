//! One in-memory implementation of the store ports ([`EventLog`] and [`SessionStore`]),
//! following their documentation: a lock with no expiry counts as held, an expired lease may
//! be taken over, release and finish clear the lock only for its owner. It records every call
//! (to count or to make one fail) and every event appended with its session, so a test can
//! read back what a crate wrote.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use agent_core::ids;
use agent_core::{
    ArtifactRecord, ArtifactRef, Event, EventLog, Finish, ForkOrigin, ForkOutcome, ForkSession,
    Lease, LockOutcome, NewArtifact, NewSession, Profile, SessionListItem, SessionRecord,
    SessionStatus, SessionStore, StoreError, StoredEvent, Timestamp, Workflow,
};
use async_trait::async_trait;
use serde_json::Value;

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
    ReadArtifact,
    RecoverInterrupted,
    Outputs,
    InterruptExecution,
    SweepExpiredLeases,
    RenewLock,
    RequestCancel,
    CancelRequested,
    KeepResult,
    KeptResult,
    ForkSession,
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

impl StoredArtifact {
    /// The port's metadata record (the fake keeps no hash and no creation time).
    pub fn record(&self) -> ArtifactRecord {
        ArtifactRecord {
            artifact_id: self.artifact_id.clone(),
            session_id: self.session_id.clone(),
            artifact_type: self.artifact_type.clone(),
            logical_name: self.logical_name.clone(),
            mime_type: self.mime_type.clone(),
            size_bytes: self.body.len() as i64,
            sha256: String::new(),
            created_at: String::new(),
            turn_index: self.turn_index,
            producer_tool: self.producer_tool.clone(),
        }
    }
}

#[derive(Default)]
struct MemState {
    sessions: HashMap<String, SessionRecord>,
    events: Vec<StoredEvent>,
    artifacts: Vec<StoredArtifact>,
    /// Full outputs per session, keyed by turn index (one per turn, never replaced).
    outputs: HashMap<String, BTreeMap<i64, String>>,
    /// Every event written through the store, with its session, in order.
    appended: Vec<(String, Event)>,
    /// The kept result of each session's latest execution: (execution, envelope text).
    results: HashMap<String, (i64, String)>,
    /// Cancel requests by session: (lock generation they were made for, reason).
    cancels: HashMap<String, (i64, String)>,
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
            self.appended.push((session_id.to_owned(), e.clone()));
        }
    }
}

type GetHook = Box<dyn FnOnce(&mut SessionRecord) + Send>;

/// The in-memory store (see the module documentation).
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
        self.failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(method);
    }

    /// Makes the next `times` calls of `method` fail (with the same message as
    /// [`fail`](Self::fail)); later calls work.
    pub fn fail_times(&self, method: Method, times: usize) {
        self.failing_times
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(method, times);
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
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes the stored row right after the next `get_session` has taken its snapshot:
    /// simulates another process acting between the engine's read and its lock.
    pub fn after_next_get(&self, hook: impl FnOnce(&mut SessionRecord) + Send + 'static) {
        *self
            .after_get
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Box::new(hook));
    }

    /// Inserts a row as is.
    pub fn seed(&self, record: SessionRecord) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.sessions.insert(record.session_id.clone(), record);
    }

    /// Appends events to a seeded session.
    pub fn seed_events(&self, session_id: &str, events: &[Event]) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .append(session_id, events);
    }

    /// Appends an event whose type this build may not know (a database shared with other
    /// implementations can hold such rows).
    pub fn seed_raw_event(&self, session_id: &str, event_type: &str, turn: i64, payload: Value) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
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
            .unwrap_or_else(PoisonError::into_inner)
            .outputs
            .entry(session_id.to_owned())
            .or_default()
            .insert(turn, text.to_owned());
    }

    /// The kept full outputs of a session, in turn order.
    pub fn outputs_of(&self, session_id: &str) -> Vec<(i64, String)> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .outputs
            .get(session_id)
            .map(|m| m.iter().map(|(t, s)| (*t, s.clone())).collect())
            .unwrap_or_default()
    }

    pub fn record(&self, session_id: &str) -> Option<SessionRecord> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sessions
            .get(session_id)
            .cloned()
    }

    pub fn session_count(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sessions
            .len()
    }

    pub fn all_events(&self) -> Vec<StoredEvent> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .events
            .clone()
    }

    pub fn events_of(&self, session_id: &str) -> Vec<StoredEvent> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .events
            .iter()
            .filter(|e| e.session_id == session_id)
            .cloned()
            .collect()
    }

    /// Every event written through the store (seeded ones included, raw ones not), with its
    /// session, in the order written.
    pub fn appended(&self) -> Vec<(String, Event)> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .appended
            .clone()
    }

    pub fn artifacts(&self) -> Vec<StoredArtifact> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .artifacts
            .clone()
    }

    fn check(&self, method: Method) -> Result<(), StoreError> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(method);
        if self
            .failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&method)
        {
            return Err(StoreError::new(Self::failure_message(method)));
        }
        if let Some(left) = self
            .failing_times
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&method)
            && *left > 0
        {
            *left -= 1;
            return Err(StoreError::new(Self::failure_message(method)));
        }
        Ok(())
    }
}

/// Whether `lease` (owner and generation) holds `row`'s lock.
fn holds(row: &SessionRecord, lease: &Lease) -> bool {
    row.locked_by.as_deref() == Some(lease.owner.as_str())
        && row.lock_generation == lease.generation
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
        lock_generation: 0,
        fork: None,
        usage: Default::default(),
    }
}

#[async_trait]
impl EventLog for MemStore {
    async fn append_events(&self, session_id: &str, events: &[Event]) -> Result<(), StoreError> {
        self.check(Method::AppendEvents)?;
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .append(session_id, events);
        Ok(())
    }

    async fn events(&self, session_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        self.check(Method::Events)?;
        Ok(self.events_of(session_id))
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
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
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
            lock_generation: 1,
            fork: None,
            usage: Default::default(),
        };
        state
            .sessions
            .insert(record.session_id.clone(), record.clone());
        state.append(&session.session_id, events);
        Ok(record)
    }

    async fn get_session(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.check(Method::GetSession)?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let snapshot = state.sessions.get(session_id).cloned();
        if let Some(hook) = self
            .after_get
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
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
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
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
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
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
        row.lock_generation += 1;
        let record = row.clone();
        state.cancels.remove(session_id);
        Ok(LockOutcome::Acquired(Box::new(record)))
    }

    async fn release_lock(&self, session_id: &str, owner: &str) -> Result<(), StoreError> {
        self.check(Method::ReleaseLock)?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(row) = state.sessions.get_mut(session_id)
            && row.locked_by.as_deref() == Some(owner)
        {
            row.locked_by = None;
            row.lock_expires_at = None;
            state.cancels.remove(session_id);
        }
        Ok(())
    }

    async fn renew_lock(
        &self,
        session_id: &str,
        lease: &Lease,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.check(Method::RenewLock)?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.sessions.get_mut(session_id) {
            Some(row) if holds(row, lease) => {
                row.lock_expires_at = Some(Timestamp::now().plus(ttl));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn begin_execution(&self, session_id: &str, events: &[Event]) -> Result<(), StoreError> {
        self.check(Method::BeginExecution)?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
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

    async fn request_cancel(&self, session_id: &str, reason: &str) -> Result<bool, StoreError> {
        self.check(Method::RequestCancel)?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(row) = state.sessions.get(session_id) else {
            return Ok(false);
        };
        if row.status != SessionStatus::Running || row.locked_by.is_none() {
            return Ok(false);
        }
        let generation = row.lock_generation;
        let reason = agent_core::bounded_cancel_reason(reason);
        state
            .cancels
            .entry(session_id.to_owned())
            .or_insert_with(|| (generation, reason.to_owned()));
        Ok(true)
    }

    async fn cancel_requested(
        &self,
        session_id: &str,
        lease: &Lease,
    ) -> Result<Option<String>, StoreError> {
        self.check(Method::CancelRequested)?;
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(row) = state.sessions.get(session_id) else {
            return Ok(None);
        };
        if !holds(row, lease) {
            return Ok(None);
        }
        Ok(state
            .cancels
            .get(session_id)
            .filter(|(generation, _)| *generation == lease.generation)
            .map(|(_, reason)| reason.clone()))
    }

    async fn finish_execution(
        &self,
        session_id: &str,
        lease: &Lease,
        finish: &Finish,
    ) -> Result<(), StoreError> {
        let owner = lease.owner.as_str();
        self.check(Method::FinishExecution)?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let (Some(_), Some(turn)) = (&finish.output_text, finish.turn_count)
            && state
                .outputs
                .get(session_id)
                .is_some_and(|kept| kept.contains_key(&turn))
        {
            // A kept output is never overwritten, and nothing of this finish is applied.
            return Err(StoreError::new(format!(
                "the output of turn {turn} of session {session_id} is already kept by another execution"
            )));
        }
        let row = state
            .sessions
            .get_mut(session_id)
            .ok_or_else(|| not_found(session_id))?;
        // Fenced: only the execution that holds the lock (owner and generation) writes its end.
        if !holds(row, lease) {
            let held = row.locked_by.as_deref().map_or_else(
                || "no one holds it".to_owned(),
                |h| format!("held by {h} at generation {}", row.lock_generation),
            );
            return Err(StoreError::not_holder(format!(
                "Session {session_id}: execution {owner} no longer holds its lock ({held}): nothing was written"
            )));
        }
        if finish
            .result
            .as_ref()
            .is_some_and(|r| r.len() > agent_core::MAX_KEPT_RESULT_BYTES)
        {
            return Err(StoreError::new(format!(
                "Session {session_id}: its result is more than the {} bytes kept",
                agent_core::MAX_KEPT_RESULT_BYTES
            )));
        }
        let execution = row.request_count;
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
        if let Some(usage) = &finish.usage {
            row.usage.add(usage);
        }
        touch(row);
        row.locked_by = None;
        row.lock_expires_at = None;
        state.cancels.remove(session_id);
        state.append(session_id, &finish.events);
        if let (Some(text), Some(turn)) = (&finish.output_text, finish.turn_count) {
            state
                .outputs
                .entry(session_id.to_owned())
                .or_default()
                .insert(turn, text.clone());
        }
        if let Some(envelope) = &finish.result
            && state
                .results
                .get(session_id)
                .is_none_or(|(kept, _)| *kept <= execution)
        {
            state
                .results
                .insert(session_id.to_owned(), (execution, envelope.clone()));
        }
        Ok(())
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
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
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

    async fn read_artifact(
        &self,
        session_id: &str,
        artifact_id: &str,
    ) -> Result<Option<(ArtifactRecord, Vec<u8>)>, StoreError> {
        self.check(Method::ReadArtifact)?;
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(state
            .artifacts
            .iter()
            .find(|a| a.session_id == session_id && a.artifact_id == artifact_id)
            .map(|a| (a.record(), a.body.clone())))
    }

    async fn interrupt_execution(
        &self,
        session_id: &str,
        lease: &Lease,
        reason: &str,
    ) -> Result<bool, StoreError> {
        self.check(Method::InterruptExecution)?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(row) = state.sessions.get_mut(session_id) else {
            return Ok(false);
        };
        if row.status != SessionStatus::Running || (row.locked_by.is_some() && !holds(row, lease)) {
            return Ok(false);
        }
        row.status = SessionStatus::Interrupted;
        row.locked_by = None;
        row.lock_expires_at = None;
        touch(row);
        let turn = row.turn_count;
        state.cancels.remove(session_id);
        state.append(session_id, &[Event::session_interrupted(turn, reason)]);
        Ok(true)
    }

    async fn sweep_expired_leases(&self) -> Result<u64, StoreError> {
        self.check(Method::SweepExpiredLeases)?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
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
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Timestamp::now();
        let mut count = 0;
        for row in state.sessions.values_mut() {
            // A live lease (another process's run) is left alone, as in the sweep.
            let held = row.locked_by.is_some() && row.lock_expires_at.is_none_or(|exp| exp > now);
            if row.status == SessionStatus::Running && !held {
                row.status = SessionStatus::Interrupted;
                row.locked_by = None;
                row.lock_expires_at = None;
                touch(row);
                count += 1;
            }
        }
        Ok(count)
    }

    async fn fork_session(&self, fork: &ForkSession) -> Result<ForkOutcome, StoreError> {
        self.check(Method::ForkSession)?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(parent) = state.sessions.get(&fork.parent_session_id).cloned() else {
            return Ok(ForkOutcome::NotFound);
        };
        if state.sessions.contains_key(&fork.session_id) {
            return Err(StoreError::new(
                "UNIQUE constraint failed: sessions.session_id",
            ));
        }
        let now = Timestamp::now();
        let record = SessionRecord {
            session_id: fork.session_id.clone(),
            provider_session_id: None,
            status: SessionStatus::Completed,
            created_at: now,
            updated_at: now,
            last_activity_at: now,
            request_count: 0,
            turn_count: fork.at_turn,
            artifact_count: 0,
            summary_latest: fork.summary_latest.clone(),
            locked_by: None,
            lock_expires_at: None,
            lock_generation: 0,
            fork: Some(ForkOrigin {
                parent_session_id: fork.parent_session_id.clone(),
                at_turn: fork.at_turn,
            }),
            // A fork starts with no usage of its own, as in both stores.
            usage: Default::default(),
            ..parent
        };
        state
            .sessions
            .insert(record.session_id.clone(), record.clone());
        let copied: Vec<StoredEvent> = state
            .events
            .iter()
            .filter(|e| {
                e.session_id == fork.parent_session_id && e.event_id <= fork.through_event_id
            })
            .cloned()
            .collect();
        for event in copied {
            state.next_event_id += 1;
            let event_id = state.next_event_id;
            state.events.push(StoredEvent {
                event_id,
                session_id: fork.session_id.clone(),
                ..event
            });
        }
        let outputs: BTreeMap<i64, String> = state
            .outputs
            .get(&fork.parent_session_id)
            .map(|m| {
                m.range(..=fork.at_turn)
                    .map(|(t, s)| (*t, s.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if !outputs.is_empty() {
            state.outputs.insert(fork.session_id.clone(), outputs);
        }
        state.append(&fork.session_id, std::slice::from_ref(&fork.child_event));
        state.append(
            &fork.parent_session_id,
            std::slice::from_ref(&fork.parent_event),
        );
        Ok(ForkOutcome::Forked(Box::new(record)))
    }

    async fn outputs(&self, session_id: &str) -> Result<Vec<(i64, String)>, StoreError> {
        self.check(Method::Outputs)?;
        Ok(self.outputs_of(session_id))
    }

    async fn keep_result(
        &self,
        session_id: &str,
        execution: i64,
        envelope: &str,
    ) -> Result<bool, StoreError> {
        self.check(Method::KeepResult)?;
        if envelope.len() > agent_core::MAX_KEPT_RESULT_BYTES {
            return Err(StoreError::new(format!(
                "result is {} bytes, more than the {} kept",
                envelope.len(),
                agent_core::MAX_KEPT_RESULT_BYTES
            )));
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !state.sessions.contains_key(session_id) {
            return Err(not_found(session_id));
        }
        match state.results.get(session_id) {
            Some((kept, _)) if *kept > execution => Ok(false),
            _ => {
                state
                    .results
                    .insert(session_id.to_owned(), (execution, envelope.to_owned()));
                Ok(true)
            }
        }
    }

    async fn kept_result(&self, session_id: &str) -> Result<Option<(i64, String)>, StoreError> {
        self.check(Method::KeptResult)?;
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(state.results.get(session_id).cloned())
    }
}
