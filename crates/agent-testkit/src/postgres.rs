//! A PostgreSQL for tests: every test that needs one gets a fresh schema of its own, so such
//! tests run in parallel on one server and leave nothing behind.
//!
//! ```no_run
//! # async fn t() {
//! let Some(pg) = agent_testkit::postgres::fresh_schema().await else { return };
//! // pg.url() selects the schema (`options=-c search_path=<schema>`); dropped with `pg`.
//! # }
//! ```
//!
//! The server is named by [`POSTGRES_URL_VAR`] (default [`DEFAULT_POSTGRES_URL`], the
//! PostgreSQL that the project's machines and CI run). When it does not answer, the test is
//! skipped with a `SKIPPED <test>: …` line on stderr, or fails under
//! `CLAUDE_AGENT_MCP_REQUIRE_PEERS=1` (CI), exactly like the other peers
//! ([`crate::peers`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::peers::{Lookup, REQUIRE_PEERS_VAR, peers_required_in, process_env};

/// Names the PostgreSQL server tests use (a `postgres://` URL of a database the user may
/// create schemas in).
pub const POSTGRES_URL_VAR: &str = "CLAUDE_AGENT_MCP_TEST_POSTGRES_URL";

/// The server when [`POSTGRES_URL_VAR`] is unset: trust auth on the loopback, database `test`.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// What starts a PostgreSQL where none answers (CI runs it through `cargo xtask release-check`).
pub const POSTGRES_INSTALL: &str = "cargo xtask release-check (ensure_postgres)";

/// How long the first connection may take before the server counts as missing.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A schema made for one test; dropped (with everything in it) when this is dropped.
#[derive(Debug)]
pub struct FreshSchema {
    base: String,
    schema: String,
    url: String,
}

impl FreshSchema {
    /// The URL of the schema: the server's URL with `options=-c search_path=<schema>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The schema's name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The server's URL as configured (no schema selected).
    pub fn server_url(&self) -> &str {
        &self.base
    }

    /// A connection to the schema, for a test that edits rows under the store.
    ///
    /// # Panics
    /// When it cannot connect.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.url))
    }
}

impl Drop for FreshSchema {
    fn drop(&mut self) {
        let base = self.base.clone();
        let drop_sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
        // Drop may run inside a runtime (the test's): a thread with its own runtime does the
        // I/O, and the test waits for it so that nothing outlives the test process.
        let done = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&base).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop_sql))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = done.join();
    }
}

/// A new schema on the test server, or `None` (after a `SKIPPED` note) when no server answers.
///
/// # Panics
/// When no server answers under `CLAUDE_AGENT_MCP_REQUIRE_PEERS=1`, or the schema cannot be
/// created on a server that answers.
pub async fn fresh_schema() -> Option<FreshSchema> {
    fresh_schema_in(&process_env).await
}

/// [`fresh_schema`] with the variables read from `env`.
pub async fn fresh_schema_in(env: Lookup<'_>) -> Option<FreshSchema> {
    let base = server_url_in(env);
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(&base)).await;
    let mut conn = match connected {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return missing(env, &base, &e.to_string()),
        Err(_) => return missing(env, &base, "no answer within 5 s"),
    };
    let schema = unique_schema_name();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create schema {schema} on {base}: {e}"));
    let _ = conn.close().await;
    let url = with_search_path(&base, &schema);
    Some(FreshSchema { base, schema, url })
}

/// The server URL: [`POSTGRES_URL_VAR`] or [`DEFAULT_POSTGRES_URL`].
pub fn server_url_in(env: Lookup<'_>) -> String {
    env(POSTGRES_URL_VAR)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_POSTGRES_URL.to_owned())
}

/// `url` with `options=-c search_path=<schema>` added to its query.
pub fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

fn unique_schema_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "t_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn missing(env: Lookup<'_>, url: &str, why: &str) -> Option<FreshSchema> {
    let test = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("this test")
        .to_owned();
    let message = format!(
        "{test} needs PostgreSQL, and none answers at {} ({why}; set {POSTGRES_URL_VAR}, or start one: {POSTGRES_INSTALL})",
        agent_core::text::redact_url(url)
    );
    assert!(
        !peers_required_in(env),
        "{message}; {REQUIRE_PEERS_VAR}=1 makes a missing peer a failure"
    );
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("SKIPPED {message}\n").as_bytes(),
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_path_is_added_to_the_query() {
        assert_eq!(
            with_search_path("postgres://u@h/db", "s1"),
            "postgres://u@h/db?options=-c%20search_path%3Ds1"
        );
        assert_eq!(
            with_search_path("postgres://u@h/db?sslmode=disable", "s1"),
            "postgres://u@h/db?sslmode=disable&options=-c%20search_path%3Ds1"
        );
    }

    #[test]
    fn the_default_server_is_used_when_the_variable_is_blank() {
        assert_eq!(server_url_in(&|_| None), DEFAULT_POSTGRES_URL);
        assert_eq!(server_url_in(&|_| Some(" ".into())), DEFAULT_POSTGRES_URL);
        assert_eq!(
            server_url_in(&|_| Some("postgres://x@y/z".into())),
            "postgres://x@y/z"
        );
    }

    #[tokio::test]
    async fn a_server_that_does_not_answer_skips_when_not_required() {
        let env = |name: &str| match name {
            POSTGRES_URL_VAR => Some("postgres://u:secret@127.0.0.1:1/x".to_owned()),
            _ => None,
        };
        assert!(fresh_schema_in(&env).await.is_none());
    }

    #[tokio::test]
    #[should_panic(
        expected = "needs PostgreSQL, and none answers at postgres://u:***@127.0.0.1:1/x"
    )]
    async fn a_server_that_does_not_answer_fails_when_required() {
        let env = |name: &str| match name {
            POSTGRES_URL_VAR => Some("postgres://u:secret@127.0.0.1:1/x".to_owned()),
            REQUIRE_PEERS_VAR => Some("1".to_owned()),
            _ => None,
        };
        fresh_schema_in(&env).await;
    }
}
