//! # agent-store
//!
//! The SQLite implementation of [`agent_core::SessionStore`]: durable sessions, their append-only
//! event log and artifact files, in the schema of `docs/reference/sessions.md#9-database-schema` so
//! that a database is interchangeable with the original implementation's
//! (`docs/compatibility.md#kept-exactly`).
//!
//! ```ignore
//! let store = SqliteStore::open(StoreConfig {
//!     db_path: state_dir.join("claude-agent-mcp.db"),
//!     artifact_dir: state_dir.join("artifacts"),
//!     max_artifact_bytes: 10 * 1024 * 1024,
//! })
//! .await?;
//! // Startup crash recovery (docs/reference/sessions.md#5-crash-recovery).
//! let recovered = store.recover_interrupted().await?;
//! ```
//!
//! Modules:
//! * [`config`]: the store configuration and the errors of opening a store;
//! * [`store`]: [`SqliteStore`], its connection pool, schema bootstrap and every query;
//! * `tasks`: [`agent_core::TaskStore`] on the same database (MCP tasks and requests in
//!   flight, migration `0004_mcp_tasks_and_requests.sql`);
//! * `rows`: decoding of raw rows into the domain types of `agent-core`;
//! * `reader`: a read-only rusqlite connection that serves `get_session` on the calling thread;
//! * `artifacts`: artifact file naming, hashing and writing;
//! * `error`: the crate-local error type and its mapping into [`agent_core::StoreError`].

mod artifacts;
pub mod config;
mod error;
mod reader;
mod rows;
pub mod store;
mod tasks;

pub use config::{StoreConfig, StoreOpenError};
pub use store::SqliteStore;
