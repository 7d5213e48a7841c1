//! The crate-local error type: every failure of a store operation is classified here once and
//! turned into the port's [`agent_core::StoreError`] (a message for operators).

use std::path::PathBuf;

/// A failure inside a store operation.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("cannot serialise event payload: {0}")]
    EncodePayload(#[source] serde_json::Error),
    #[error("artifact file error at {}: {source}", path.display())]
    ArtifactIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Artifact exceeds max size: {size} > {max}")]
    ArtifactTooLarge { size: u64, max: u64 },
    #[error("artifact path is not valid UTF-8: {}", .0.display())]
    NonUtf8Path(PathBuf),
    #[error("Session {0} not found")]
    SessionNotFound(String),
    /// The write that ends an execution is fenced: `owner` no longer holds the lock.
    #[error(
        "Session {session_id}: execution {owner} no longer holds its lock ({}): nothing was written",
        holder.as_deref().map_or_else(|| "no one holds it".to_owned(), |h| format!("held by {h}"))
    )]
    NotHolder {
        session_id: String,
        owner: String,
        holder: Option<String>,
    },
    /// Another execution already kept the output of this turn: it is never overwritten.
    #[error(
        "the output of turn {turn} of session {session_id} is already kept by another execution"
    )]
    OutputKept { session_id: String, turn: i64 },
    /// A task id longer than the port allows (`agent_core::mcp_tasks::MAX_TASK_ID_BYTES`).
    #[error("task id is {len} bytes, more than the {max} allowed")]
    TaskIdTooLong { len: usize, max: usize },
    /// A task result larger than the port allows (`agent_core::mcp_tasks::MAX_TASK_RESULT_BYTES`).
    #[error("task result is {size} bytes, more than the {max} kept")]
    TaskResultTooLarge { size: usize, max: usize },
    /// A kept result larger than the port allows (`agent_core::MAX_KEPT_RESULT_BYTES`).
    #[error("result is {size} bytes, more than the {max} kept")]
    ResultTooLarge { size: usize, max: usize },
    /// A stored value that this build cannot decode (unknown enum text, bad timestamp, bad JSON).
    #[error("corrupt {table} row {key}: {problem}")]
    CorruptRow {
        table: &'static str,
        key: String,
        problem: String,
    },
}

impl Error {
    /// A fenced final write that changed nothing: the session is gone (`holder` is `None`, no
    /// row) or `owner` no longer holds its lock (`holder` is the row's `locked_by`).
    pub(crate) fn not_applied(
        session_id: &str,
        owner: &str,
        holder: Option<Option<String>>,
    ) -> Self {
        match holder {
            None => Error::SessionNotFound(session_id.to_owned()),
            Some(holder) => Error::NotHolder {
                session_id: session_id.to_owned(),
                owner: owner.to_owned(),
                holder,
            },
        }
    }
}

impl From<Error> for agent_core::StoreError {
    fn from(error: Error) -> Self {
        match error {
            Error::NotHolder { .. } => agent_core::StoreError::not_holder(error.to_string()),
            _ => agent_core::StoreError::new(error.to_string()),
        }
    }
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;
