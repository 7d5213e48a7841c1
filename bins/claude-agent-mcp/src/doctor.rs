//! `claude-agent-mcp doctor` (`docs/reference/status.md#2-command-line`): checks an installation
//! without serving MCP.
//!
//! One line per check on stdout, `✓ <check>: <what was found>` or
//! `✗ <check>: <what is wrong> — fix: <what to do>`, then a summary line. The exit status is 1
//! when any check failed, 0 otherwise. Checks, in order:
//!
//! 1. `configuration`: the startup validation ([`agent_policy::config::load`], the restricted
//!    mode's contract). Nothing else can be checked without it, so a failure ends the run.
//!    It is followed by a line naming the env file read (`env file: …`) and, for a `.env` of
//!    the working directory, the settings it may not set and that were ignored.
//! 2. `state directory`, and `database directory` / `artifact directory` when they are not
//!    inside it: writable, by creating and removing a probe file (in the nearest existing
//!    ancestor when the directory does not exist yet, since startup creates it).
//! 3. `database`: an existing database opens as at startup, its schema version is recorded and
//!    its journal mode is WAL (read from the file header). A missing database is not created.
//!    With `CLAUDE_AGENT_MCP_DATABASE_URL=postgres://…`: the server answers, the schema the URL
//!    selects exists, and the store's schema version there (or that the first node to start
//!    will create it); read-only, and the URL's password is redacted
//!    ([`agent_core::text::redact_url`]). The database and artifact directories are then not
//!    probed: PostgreSQL keeps both.
//! 4. The backend. `api`: `api key` (present, usable in a header) and `api endpoint`
//!    (`GET {base}/v1/models` with the key: any HTTP answer means reachable, 401 means the key
//!    is bad). `claude_code`: `claude CLI` (located and answering `--version`).
//! 5. `federation`: the config file ([`FederationConfig::load`]) and, for each enabled
//!    downstream server, discovery through [`Federation::start`] (`downstream '<name>'`).
//!
//! Nothing is read from stdin. The database is never written to: opening an up-to-date
//! database changes nothing, and a database that does not exist yet is left uncreated.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agent_backends::ClaudeCodeBackend;
use agent_backends::api::{ANTHROPIC_VERSION, ApiConfig, MessagesApiBackend, error_chain};
use agent_core::{ErrorCode, Event, EventLog, StoreError, StoredEvent};
use agent_federation::{ConnectionState, Federation, FederationConfig, FederationConfigError};
use agent_policy::config::{
    BackendKind, Config, DOTENV, Database, EnvFile, RuntimeMode, SecretUrl, vars,
};
use agent_policy::{CliOverrides, restricted};
use agent_store::{SqliteStore, StoreConfig, StoreOpenError};

/// Marks a check that passed.
pub const PASS: &str = "✓";
/// Marks a check that failed.
pub const FAIL: &str = "✗";

/// How long the API endpoint probe may take, connection included.
const API_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs every check, writing the report to `out`; the exit status is 1 if any check failed.
pub async fn run(overrides: &CliOverrides, out: &mut impl Write) -> ExitCode {
    let mut report = Report::new(out);
    let cwd = match std::env::current_dir() {
        Ok(cwd) => cwd,
        Err(e) => {
            report.fail(
                "configuration",
                format!("cannot read the working directory: {e}"),
                "start claude-agent-mcp from an existing, readable directory",
            );
            return report.finish();
        }
    };
    report.line(&format!(
        "claude-agent-mcp {} doctor, working directory {}",
        agent_core::VERSION,
        cwd.display()
    ));
    let Some(config) = check_config(&mut report, &cwd, overrides) else {
        return report.finish();
    };
    let db_dir_ok = check_directories(&mut report, &config);
    match &config.database {
        Database::Sqlite => check_database(&mut report, &config, db_dir_ok).await,
        Database::Postgresql { url } => check_postgres(&mut report, url).await,
    }
    match config.backend {
        BackendKind::Api => check_api(&mut report, &config).await,
        BackendKind::ClaudeCode => check_claude_code(&mut report, &config).await,
    }
    check_federation(&mut report, &config).await;
    report.finish()
}

/// The PostgreSQL store: the server answers, the selected schema exists, and the store's schema
/// version there. Read-only: a schema without the store's tables is reported, not created.
async fn check_postgres<W: Write>(report: &mut Report<'_, W>, url: &SecretUrl) {
    let shown = url.redacted();
    let probed = match agent_store::postgres::probe(url.expose()).await {
        Ok(probed) => probed,
        Err(e) => {
            report.fail(
                "database",
                e.to_string(),
                format!(
                    "check {} (host, port, user, password, database, sslmode) and that the \
                     server accepts connections from this host",
                    vars::DATABASE_URL
                ),
            );
            return;
        }
    };
    let Some(schema) = probed.schema else {
        report.fail(
            "database",
            format!(
                "{shown}: PostgreSQL {} answers, but no schema of the search_path exists",
                probed.server_version
            ),
            "create the schema (CREATE SCHEMA …) or select an existing one with \
             options=-c search_path=<schema> in the URL",
        );
        return;
    };
    match probed.schema_version {
        Some(version) => report.pass(
            "database",
            format!(
                "{shown}: PostgreSQL {}, schema {schema}, schema version {version}",
                probed.server_version
            ),
        ),
        None => report.pass(
            "database",
            format!(
                "{shown}: PostgreSQL {}, schema {schema} has no session tables yet: the first \
                 server to start creates them",
                probed.server_version
            ),
        ),
    }
}

/// Collects the outcome of every check and writes one line per check.
struct Report<'a, W: Write> {
    out: &'a mut W,
    checks: usize,
    failures: usize,
}

impl<'a, W: Write> Report<'a, W> {
    fn new(out: &'a mut W) -> Self {
        Self {
            out,
            checks: 0,
            failures: 0,
        }
    }

    fn line(&mut self, text: &str) {
        // A closed stdout (e.g. `doctor | head -1`) must not turn into a panic.
        let _ = writeln!(self.out, "{text}");
    }

    fn pass(&mut self, check: &str, found: impl AsRef<str>) {
        self.checks += 1;
        self.line(&format!("{PASS} {check}: {}", found.as_ref()));
    }

    fn fail(&mut self, check: &str, problem: impl AsRef<str>, fix: impl AsRef<str>) {
        self.checks += 1;
        self.failures += 1;
        self.line(&format!(
            "{FAIL} {check}: {} — fix: {}",
            problem.as_ref(),
            fix.as_ref()
        ));
    }

    fn finish(mut self) -> ExitCode {
        let summary = match (self.checks, self.failures) {
            (n, 0) => format!("All {n} checks passed."),
            (n, f) => format!("{f} of {n} checks failed."),
        };
        self.line(&summary);
        let _ = self.out.flush();
        if self.failures == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

fn check_config<W: Write>(
    report: &mut Report<'_, W>,
    cwd: &Path,
    overrides: &CliOverrides,
) -> Option<Config> {
    let file = match &overrides.env_file {
        EnvFile::Implicit => Some(cwd.join(DOTENV)),
        EnvFile::Named(path) => Some(cwd.join(path)),
        EnvFile::Disabled => None,
    };
    let fix = match file {
        Some(file) => format!(
            "correct these settings (environment, {}, or command-line flags); see docs/configuration.md",
            file.display()
        ),
        None => {
            "correct these settings (environment or command-line flags); see docs/configuration.md"
                .to_owned()
        }
    };
    let config = match agent_policy::config::load(cwd, overrides) {
        Ok(config) => config,
        Err(errors) => {
            report.fail(
                "configuration",
                format!("{} problem(s): {}", errors.0.len(), errors.0.join("; ")),
                fix,
            );
            return None;
        }
    };
    if config.mode == RuntimeMode::ApntalkVerification {
        let admitted = crate::admitted_tools(&config);
        let reasons = restricted::contract_violations(&config, &crate::tool_names(&admitted));
        if !reasons.is_empty() {
            report.fail(
                "configuration",
                format!(
                    "the {} restriction contract is violated: {}",
                    restricted::CONTRACT_ID,
                    reasons.join("; ")
                ),
                fix,
            );
            return None;
        }
    }
    report.pass(
        "configuration",
        format!(
            "valid (mode={}, backend={}, transport={}, model={})",
            config.mode, config.backend, config.transport, config.model
        ),
    );
    if let Some(file) = &config.env_file {
        // Not a check: an implicit file's ignored settings do not stop the server either.
        let how = match (file.named, file.ignored.as_slice()) {
            (true, _) => "named with --env-file, every setting taken".to_owned(),
            (false, []) => "found in the working directory".to_owned(),
            (false, ignored) => format!(
                "found in the working directory; ignored {}: name it with --env-file to use them",
                ignored.join(", ")
            ),
        };
        report.line(&format!("env file: {} ({how})", file.path.display()));
    }
    Some(config)
}

// ---------------------------------------------------------------------------------------------
// State, database and artifact directories
// ---------------------------------------------------------------------------------------------

/// Probes the state directory and, when they lie elsewhere or already exist, the database and
/// artifact directories. Returns whether the database's directory is usable.
fn check_directories<W: Write>(report: &mut Report<'_, W>, config: &Config) -> bool {
    let db_dir = config
        .db_path
        .parent()
        .map_or_else(|| config.cwd.clone(), Path::to_path_buf);
    let mut candidates = vec![("state directory", config.state_dir.clone(), vars::STATE_DIR)];
    // PostgreSQL keeps the sessions and the artifact bodies: neither directory is used.
    if config.database == Database::Sqlite {
        candidates.push(("database directory", db_dir.clone(), vars::DB_PATH));
        candidates.push((
            "artifact directory",
            config.artifact_dir.clone(),
            vars::ARTIFACT_DIR,
        ));
    }
    let mut checked: Vec<(PathBuf, bool)> = Vec::new();
    for (check, dir, var) in candidates {
        if checked.iter().any(|(d, _)| *d == dir) {
            continue;
        }
        // A directory startup would create inside one already probed needs no probe of its own.
        if !dir.exists() && checked.iter().any(|(d, _)| dir.starts_with(d)) {
            continue;
        }
        let ok = match probe_directory(&dir) {
            Ok(found) => {
                report.pass(check, found);
                true
            }
            Err(problem) => {
                report.fail(
                    check,
                    problem,
                    format!(
                        "make it a directory the server's user can write, or point {var} elsewhere"
                    ),
                );
                false
            }
        };
        checked.push((dir, ok));
    }
    // The database directory's verdict is that of the probe covering it.
    checked
        .iter()
        .filter(|(d, _)| db_dir.starts_with(d))
        .max_by_key(|(d, _)| d.components().count())
        .is_none_or(|(_, ok)| *ok)
}

/// Creates and removes a probe file in `dir`, or in its nearest existing ancestor when `dir`
/// does not exist yet. `Ok` describes what was found, `Err` what is wrong.
fn probe_directory(dir: &Path) -> Result<String, String> {
    if dir.exists() {
        if !dir.is_dir() {
            return Err(format!("{} exists but is not a directory", dir.display()));
        }
        write_probe(dir).map_err(|e| format!("{} is not writable: {e}", dir.display()))?;
        return Ok(format!("{} is writable", dir.display()));
    }
    let Some(ancestor) = dir.ancestors().skip(1).find(|a| a.exists()) else {
        return Err(format!(
            "{} cannot be created: no part of the path exists",
            dir.display()
        ));
    };
    if !ancestor.is_dir() {
        return Err(format!(
            "{} cannot be created: {} is not a directory",
            dir.display(),
            ancestor.display()
        ));
    }
    write_probe(ancestor).map_err(|e| {
        format!(
            "{} cannot be created: {} is not writable: {e}",
            dir.display(),
            ancestor.display()
        )
    })?;
    Ok(format!(
        "{} does not exist yet and will be created at startup ({} is writable)",
        dir.display(),
        ancestor.display()
    ))
}

fn write_probe(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(
        ".claude-agent-mcp-doctor-{}.probe",
        std::process::id()
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut file| file.write_all(b"claude-agent-mcp doctor probe\n"));
    let removed = std::fs::remove_file(&probe);
    written?;
    removed
}

// ---------------------------------------------------------------------------------------------
// Database
// ---------------------------------------------------------------------------------------------

async fn check_database<W: Write>(report: &mut Report<'_, W>, config: &Config, dir_ok: bool) {
    let path = &config.db_path;
    if !path.exists() {
        if dir_ok {
            report.pass(
                "database",
                format!(
                    "{} does not exist yet and will be created at startup",
                    path.display()
                ),
            );
        } else {
            report.fail(
                "database",
                format!(
                    "{} does not exist and its directory is not usable",
                    path.display()
                ),
                "fix the directory reported above",
            );
        }
        return;
    }
    if !path.is_file() {
        report.fail(
            "database",
            format!("{} is not a regular file", path.display()),
            format!(
                "point {} at an SQLite database file (or a path that does not exist yet)",
                vars::DB_PATH
            ),
        );
        return;
    }
    let opened = SqliteStore::open(StoreConfig {
        db_path: path.clone(),
        artifact_dir: config.artifact_dir.clone(),
        max_artifact_bytes: u64::try_from(config.max_artifact_bytes).unwrap_or(0),
    })
    .await;
    let store = match opened {
        Ok(store) => store,
        Err(e) => {
            let fix = match &e {
                StoreOpenError::CreateDir { .. } => {
                    "make the directory writable by the server's user".to_owned()
                }
                StoreOpenError::Connect { .. } => format!(
                    "check that {} is an SQLite database the server's user can read and write",
                    path.display()
                ),
                // Not reached: this check opens SQLite only.
                StoreOpenError::PgConnect { .. } | StoreOpenError::PgMigrate { .. } => {
                    format!("check {}", vars::DATABASE_URL)
                }
                StoreOpenError::Migrate { .. } | StoreOpenError::Bootstrap { .. } => format!(
                    "this database was written by an incompatible version: use that version, or \
                     point {} at a new file",
                    vars::DB_PATH
                ),
            };
            report.fail("database", e.to_string(), fix);
            return;
        }
    };
    let version = store.schema_version().await;
    store.close().await;
    let version = match version {
        Ok(v) if v >= 1 => v,
        Ok(v) => {
            report.fail(
                "database",
                format!(
                    "{}: schema version {v} is not recorded in schema_migrations",
                    path.display()
                ),
                "restart the server once so that it records the schema, then run doctor again",
            );
            return;
        }
        Err(e) => {
            report.fail(
                "database",
                format!("{}: cannot read the schema version: {e}", path.display()),
                "check that the file is an intact SQLite database",
            );
            return;
        }
    };
    match journal_mode(path) {
        Ok("wal") => report.pass(
            "database",
            format!(
                "{} opens, schema version {version}, journal mode WAL",
                path.display()
            ),
        ),
        Ok(mode) => report.fail(
            "database",
            format!("{}: journal mode is {mode}, not WAL", path.display()),
            "keep the database on a local file system (WAL needs shared memory), then restart the server",
        ),
        Err(e) => report.fail(
            "database",
            format!("{}: cannot read the file header: {e}", path.display()),
            "check that the file is an intact SQLite database",
        ),
    }
}

/// The journal mode recorded in an SQLite file's header: bytes 18 and 19 (the file format
/// write and read versions) are 2 in WAL mode and 1 in the rollback-journal modes.
fn journal_mode(path: &Path) -> std::io::Result<&'static str> {
    use std::io::Read;
    let mut header = [0u8; 20];
    std::fs::File::open(path)?.read_exact(&mut header)?;
    if &header[..16] != b"SQLite format 3\0" {
        return Err(std::io::Error::other("not an SQLite 3 database"));
    }
    Ok(match (header[18], header[19]) {
        (2, 2) => "wal",
        (1, 1) => "a rollback journal",
        _ => "unknown",
    })
}

// ---------------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------------

async fn check_api<W: Write>(report: &mut Report<'_, W>, config: &Config) {
    let env_file = config.cwd.join(".env");
    if config.api_key_problem().is_some() {
        report.fail(
            "api key",
            format!(
                "{} is not set (the 'api' backend needs it)",
                vars::ANTHROPIC_API_KEY
            ),
            format!(
                "set {} in the server's environment or in {}, or use {}=claude_code",
                vars::ANTHROPIC_API_KEY,
                env_file.display(),
                vars::EXECUTION_BACKEND
            ),
        );
        return;
    }
    // The same construction as startup: key usable in a header, base URL valid.
    let api = ApiConfig::new(config.anthropic_api_key.expose(), config.model.clone())
        .with_base_url(config.anthropic_base_url.clone());
    if let Err(e) = MessagesApiBackend::new(api) {
        let fix = match e.code() {
            ErrorCode::ExecutionBackendAuthError => {
                format!(
                    "set {} to the key exactly as issued",
                    vars::ANTHROPIC_API_KEY
                )
            }
            _ => format!(
                "set {} to an http:// or https:// URL, or unset it for https://api.anthropic.com",
                vars::ANTHROPIC_BASE_URL
            ),
        };
        report.fail("api key", e.to_string(), fix);
        return;
    }
    report.pass("api key", format!("{} is set", vars::ANTHROPIC_API_KEY));

    let base = config.anthropic_base_url.trim_end_matches('/');
    let url = format!("{base}/v1/models?limit=1");
    match probe_api(&url, config.anthropic_api_key.expose()).await {
        Ok(401) => report.fail(
            "api endpoint",
            format!("{base} rejected the API key (HTTP 401 to GET /v1/models)"),
            format!(
                "set {} to a valid key (https://console.anthropic.com/settings/keys)",
                vars::ANTHROPIC_API_KEY
            ),
        ),
        Ok(status) if (300..400).contains(&status) => report.fail(
            "api endpoint",
            format!(
                "{base} answered with a redirect (HTTP {status} to GET /v1/models), which is not \
                 followed: the API key is never sent where a redirect points"
            ),
            format!(
                "set {} to the API's own address (the redirect's target, if you trust it)",
                vars::ANTHROPIC_BASE_URL
            ),
        ),
        Ok(status) => report.pass(
            "api endpoint",
            format!("{base} is reachable (HTTP {status} to GET /v1/models)"),
        ),
        Err(problem) => report.fail(
            "api endpoint",
            format!("cannot reach {base}: {problem}"),
            format!(
                "check {}, the network, and any HTTPS_PROXY / NO_PROXY settings",
                vars::ANTHROPIC_BASE_URL
            ),
        ),
    }
}

/// One authenticated `GET`; the HTTP status, or why no answer came.
async fn probe_api(url: &str, key: &str) -> Result<u16, String> {
    let mut key = reqwest::header::HeaderValue::from_str(key).map_err(|e| e.to_string())?;
    key.set_sensitive(true);
    // Never follows a redirect: it would carry the key to wherever it points.
    let client = agent_backends::api::client_builder()
        .timeout(API_PROBE_TIMEOUT)
        .user_agent(format!("{} doctor", agent_core::USER_AGENT))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .get(url)
        .header("x-api-key", key)
        .header("anthropic-version", ANTHROPIC_VERSION)
        .send()
        .await;
    match response {
        Ok(response) => Ok(response.status().as_u16()),
        Err(e) if e.is_timeout() => Err(format!(
            "no answer within {} s",
            API_PROBE_TIMEOUT.as_secs()
        )),
        // reqwest's own message only repeats the URL: the causes say what went wrong.
        Err(e) => Err(match std::error::Error::source(&e) {
            Some(cause) => error_chain(cause),
            None => e.to_string(),
        }),
    }
}

async fn check_claude_code<W: Write>(report: &mut Report<'_, W>, config: &Config) {
    let backend = ClaudeCodeBackend::new(crate::claude_code_config(config, Vec::new()));
    let located = agent_backends::locate_cli(config.claude_code_cli_path.as_deref());
    match backend.check().await {
        Ok(version) => {
            let path = located.map_or_else(|| "claude".to_owned(), |p| p.display().to_string());
            let mut found = format!("{path} answers --version: {}", version.trim());
            if let Some(explicit) = config
                .claude_code_cli_path
                .as_deref()
                .filter(|p| !p.is_file())
            {
                found.push_str(&format!(
                    " ({}={} is not a file, so PATH was searched)",
                    vars::CLAUDE_CODE_CLI_PATH,
                    explicit.display()
                ));
            }
            report.pass("claude CLI", found);
        }
        Err(e) => {
            let fix = if located.is_none() {
                format!(
                    "install Claude Code (npm install -g @anthropic-ai/claude-code) so that \
                     `claude` is on the server's PATH, or set {}; see docs/claude-code-backend.md",
                    vars::CLAUDE_CODE_CLI_PATH
                )
            } else {
                "run `<cli> --version` by hand as the server's user and fix what it reports; \
                 see docs/claude-code-backend.md"
                    .to_owned()
            };
            report.fail("claude CLI", e.message, fix);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Federation
// ---------------------------------------------------------------------------------------------

async fn check_federation<W: Write>(report: &mut Report<'_, W>, config: &Config) {
    if !config.federation_enabled {
        report.pass(
            "federation",
            format!("disabled ({} is not true)", vars::FEDERATION_ENABLED),
        );
        return;
    }
    let Some(path) = config.federation_config.as_deref() else {
        report.fail(
            "federation",
            format!("enabled, but {} is not set", vars::FEDERATION_CONFIG),
            format!(
                "set {} to the JSON config (docs/federation.md), or unset {}",
                vars::FEDERATION_CONFIG,
                vars::FEDERATION_ENABLED
            ),
        );
        return;
    };
    let federation_config = match FederationConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            let fix = match e {
                FederationConfigError::NotFound(_) => format!(
                    "create the file or correct {}; see docs/federation.md",
                    vars::FEDERATION_CONFIG
                ),
                FederationConfigError::Invalid(_) => {
                    "fix the file as the message says; the format is in docs/federation.md §3"
                        .to_owned()
                }
            };
            report.fail("federation config", e.to_string(), fix);
            return;
        }
    };
    let enabled = federation_config.enabled_servers().count();
    let mut found = format!(
        "{} is valid: {} server(s), {enabled} enabled",
        path.display(),
        federation_config.servers.len()
    );
    if !federation_config.warnings.is_empty() {
        found.push_str(&format!(
            "; warnings: {}",
            federation_config.warnings.join("; ")
        ));
    }
    report.pass("federation config", found);
    if enabled == 0 {
        return;
    }
    // Discovery only: the store is never reached, as no tool is called.
    let federation = Federation::start(federation_config, Arc::new(UnusedEventLog)).await;
    for server in federation.status().servers.iter().filter(|s| s.enabled) {
        let check = format!("downstream '{}'", server.name);
        match server.state {
            ConnectionState::Connected | ConnectionState::Idle => {
                let mut found = format!(
                    "reachable over {}: {} tool(s) discovered, {} allowlisted",
                    server.transport, server.discovered, server.allowlisted
                );
                if server.state == ConnectionState::Idle {
                    found.push_str(" (none callable: check allowed_tools and profiles_allowed)");
                }
                report.pass(&check, found);
            }
            _ => report.fail(
                &check,
                format!(
                    "discovery over {} failed: {}",
                    server.transport,
                    server.last_error.as_deref().unwrap_or("unknown error")
                ),
                "check the server's command and args (stdio) or url and headers \
                 (streamable-http), and that it answers tools/list within \
                 discovery_timeout_seconds; see docs/federation.md",
            ),
        }
    }
    federation.shutdown().await;
}

/// The event log handed to [`Federation::start`]: discovery never touches it.
struct UnusedEventLog;

fn unused<T>() -> Result<T, StoreError> {
    Err(StoreError::new("doctor: no event log"))
}

#[async_trait::async_trait]
impl EventLog for UnusedEventLog {
    async fn append_events(&self, _: &str, _: &[Event]) -> Result<(), StoreError> {
        unused()
    }
    async fn events(&self, _: &str) -> Result<Vec<StoredEvent>, StoreError> {
        unused()
    }
}
