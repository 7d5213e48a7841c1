//! `claude-agent-mcp migrate-store` (`docs/scaling.md#moving-a-sqlite-state-directory-to-postgresql`):
//! copies a SQLite state directory into a PostgreSQL store with [`agent_store::migrate`].
//!
//! The source is the configured SQLite database and artifact directory (`--from` and
//! `--artifacts` name others); the destination is `CLAUDE_AGENT_MCP_DATABASE_URL` (`--to`
//! names another; a URL on the command line is visible to other users of the machine, so the
//! variable is the better place for one with a password). Progress goes to stderr after each
//! batch, the summary to stdout; the exit status is 0 when every session was copied (or found
//! already there) and the counts matched, 1 otherwise. Every URL shown has its password
//! redacted.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use agent_core::text::redact_url;
use agent_policy::CliOverrides;
use agent_policy::config::Database;
use agent_store::migrate::{MAX_BATCH, MigrateOptions, sqlite_to_postgres};
use agent_store::{PostgresConfig, PostgresStore, SqliteStore, StoreConfig};

/// The subcommand's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    /// The PostgreSQL store to copy into (default: CLAUDE_AGENT_MCP_DATABASE_URL).
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// The SQLite database file to copy from (default: the configured one, in the state
    /// directory).
    #[arg(long, value_name = "FILE")]
    pub from: Option<PathBuf>,
    /// The artifact directory of that database (default: the configured one, or `artifacts`
    /// beside `--from`).
    #[arg(long, value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
    /// Sessions per batch: each batch is one transaction, verified by counts before it commits.
    #[arg(long, default_value_t = agent_store::migrate::DEFAULT_BATCH,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_BATCH as u64))]
    pub batch: usize,
    /// Copy even while a session's lease has not expired (a server still uses the directory).
    #[arg(long)]
    pub allow_live_leases: bool,
}

/// Runs the copy, writing the summary to `out` and progress and errors to `err`.
pub async fn run(
    overrides: &CliOverrides,
    args: &MigrateArgs,
    out: &mut impl Write,
    err: &mut impl Write,
) -> ExitCode {
    match copy(overrides, args, err).await {
        Ok(summary) => {
            let _ = writeln!(out, "{summary}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            let _ = writeln!(err, "migrate-store: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn copy(
    overrides: &CliOverrides,
    args: &MigrateArgs,
    err: &mut impl Write,
) -> Result<String, String> {
    let cwd =
        std::env::current_dir().map_err(|e| format!("cannot read the working directory: {e}"))?;
    let config = agent_policy::config::load(&cwd, overrides).map_err(|e| e.to_string())?;
    let to = match (&args.to, &config.database) {
        (Some(url), _) => match Database::parse_url(url) {
            Ok(Database::Postgresql { url }) => url,
            _ => {
                return Err(format!(
                    "--to '{}' is not a PostgreSQL URL (postgres://… or postgresql://…)",
                    redact_url(url)
                ));
            }
        },
        (None, Database::Postgresql { url }) => url.clone(),
        (None, Database::Sqlite) => {
            return Err(format!(
                "no PostgreSQL store to copy into: set {}=postgres://… or pass --to",
                agent_policy::config::vars::DATABASE_URL
            ));
        }
    };
    let (db_path, artifact_dir) = match &args.from {
        Some(file) => {
            let beside = file
                .parent()
                .unwrap_or_else(|| std::path::Path::new("."))
                .join("artifacts");
            (file.clone(), args.artifacts.clone().unwrap_or(beside))
        }
        None => (
            config.db_path.clone(),
            args.artifacts
                .clone()
                .unwrap_or_else(|| config.artifact_dir.clone()),
        ),
    };
    // Opening a SQLite store creates a missing database: a wrong path must not become an
    // empty copy that "succeeds".
    if !tokio::fs::try_exists(&db_path).await.unwrap_or(false) {
        return Err(format!("no SQLite database at {}", db_path.display()));
    }
    let max_artifact_bytes = u64::try_from(config.max_artifact_bytes).unwrap_or(0);
    let source = SqliteStore::open(StoreConfig {
        db_path: db_path.clone(),
        artifact_dir,
        max_artifact_bytes,
    })
    .await
    .map_err(|e| e.to_string())?;
    let destination = PostgresStore::open(PostgresConfig::new(to.expose(), max_artifact_bytes))
        .await
        .map_err(|e| e.to_string())?;
    let options = MigrateOptions {
        batch: args.batch,
        allow_live_leases: args.allow_live_leases,
    };
    let copied = sqlite_to_postgres(&source, &destination, options, |so_far| {
        let _ = writeln!(
            err,
            "migrate-store: {} of {} sessions done",
            so_far.sessions + so_far.already_present,
            so_far.source_sessions
        );
    })
    .await;
    destination.close().await;
    let report = copied.map_err(|e| e.to_string())?;
    Ok(format!(
        "Copied {} session(s) ({} already there), {} event(s), {} output(s), {} result(s), \
         {} artifact(s) ({} bytes) from {} to {}; counts verified.",
        report.sessions,
        report.already_present,
        report.events,
        report.outputs,
        report.results,
        report.artifacts,
        report.artifact_bytes,
        db_path.display(),
        to.redacted()
    ))
}
