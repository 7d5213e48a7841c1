//! [`FastReader`]: one read-only SQLite connection for `get_session`, queried on the calling
//! thread.
//!
//! sqlx runs each SQLite connection on its own worker thread, so every pooled query costs two
//! thread hand-offs (about 55 µs on the 2-core machine, `docs/performance.md`). Reading one
//! session by primary key takes a few microseconds in SQLite itself, so `agent_get_session`
//! tries this connection first. It shares the `libsqlite3` that sqlx links.
//!
//! It never waits and never decides alone: when the connection is busy with another caller,
//! when SQLite reports any error (a lock, a schema still being created), or when it finds no
//! row, the caller falls back to the pool, which keeps its busy timeout and error reporting.
//! WAL mode lets it read while a pooled connection writes; each read starts a fresh snapshot,
//! so a write awaited before the read is always seen.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::rows::SessionRow;
use crate::store::SELECT_SESSION;

/// A read-only connection behind a mutex that is only ever `try_lock`ed.
#[derive(Debug)]
pub(crate) struct FastReader {
    conn: Mutex<Connection>,
}

impl FastReader {
    /// Opens `db_path` read-only. `None` when it cannot (the store then always uses the pool).
    pub(crate) fn open(db_path: &Path) -> Option<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        // rusqlite's default 5 s busy timeout would block the async caller: never wait.
        let opened = Connection::open_with_flags(db_path, flags)
            .and_then(|conn| conn.busy_timeout(std::time::Duration::ZERO).map(|()| conn));
        match opened {
            Ok(conn) => Some(Self {
                conn: Mutex::new(conn),
            }),
            Err(error) => {
                tracing::debug!(%error, db = %db_path.display(), "no fast reader; reads use the pool");
                None
            }
        }
    }

    /// The row for `session_id`, or `None` when this connection cannot answer right now or
    /// finds nothing (the caller then asks the pool).
    pub(crate) fn session(&self, session_id: &str) -> Option<SessionRow> {
        let conn = self.conn.try_lock().ok()?;
        let mut statement = conn.prepare_cached(SELECT_SESSION).ok()?;
        statement
            .query_row([session_id], |row| {
                Ok(SessionRow {
                    session_id: row.get(0)?,
                    workflow: row.get(1)?,
                    profile: row.get(2)?,
                    provider: row.get(3)?,
                    provider_session_id: row.get(4)?,
                    status: row.get(5)?,
                    working_directory: row.get(6)?,
                    created_at: row.get(7)?,
                    updated_at: row.get(8)?,
                    last_activity_at: row.get(9)?,
                    request_count: row.get(10)?,
                    turn_count: row.get(11)?,
                    artifact_count: row.get(12)?,
                    summary_latest: row.get(13)?,
                    locked_by: row.get(14)?,
                    lock_expires_at: row.get(15)?,
                    lock_generation: row.get(16)?,
                    parent_session_id: row.get(17)?,
                    forked_at_turn: row.get(18)?,
                    usage_input_tokens: row.get(19)?,
                    usage_output_tokens: row.get(20)?,
                    usage_cache_creation_input_tokens: row.get(21)?,
                    usage_cache_read_input_tokens: row.get(22)?,
                    usage_cost_usd: row.get(23)?,
                })
            })
            .optional()
            .ok()
            .flatten()
    }
}
