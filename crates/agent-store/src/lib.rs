//! # agent-store
//!
//! The two implementations of [`agent_core::SessionStore`]: durable sessions, their append-only
//! event log and artifacts. [`SqliteStore`] (the embedded default for one machine) keeps the
//! schema of `docs/reference/sessions.md#9-database-schema`, so that a database is interchangeable
//! with the original implementation's (`docs/compatibility.md#kept-exactly`), and artifact
//! bodies in files; [`PostgresStore`] serves a fleet of processes from one PostgreSQL database
//! (`docs/scaling.md#the-shared-store`), artifact bodies included. Both pass one contract suite
//! (`tests/store/contract.rs`).
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
//! * [`migrate`]: copying a SQLite state directory into a PostgreSQL store;
//! * [`postgres`]: [`PostgresStore`], its pool, migrations, queries and `LISTEN` connection;
//! * `tasks`: [`agent_core::TaskStore`] on the same database (MCP tasks and requests in
//!   flight, migration `0004_mcp_tasks_and_requests.sql`);
//! * `rows`: decoding of raw rows into the domain types of `agent-core`;
//! * `reader`: a read-only rusqlite connection that serves `get_session` on the calling thread;
//! * `alike`: the statements both stores run the same way, written once;
//! * `artifacts`: artifact file naming, hashing and writing;
//! * `error`: the crate-local error type and its mapping into [`agent_core::StoreError`].

mod alike;
mod artifacts;
pub mod config;
mod error;
pub mod migrate;
pub mod postgres;
mod reader;
mod rows;
pub mod store;
mod tasks;
mod usage;

pub use config::{StoreConfig, StoreOpenError};
pub use postgres::{PostgresConfig, PostgresStore};
pub use store::SqliteStore;
