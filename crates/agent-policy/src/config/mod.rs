//! Configuration loading and startup validation (`docs/reference/policy.md#7-operator-presets`,
//! `docs/reference/policy.md#8-configuration-parsing`,
//! `docs/reference/policy.md#91-configuration-errors`, `docs/reference/status.md#2-command-line`,
//! `docs/reference/status.md#42-streamable-http`; the variables: `docs/configuration.md`).
//!
//! # Sources and precedence
//! 1. CLI flags ([`CliOverrides`]: `--mode`, `--transport`, `--host`, `--port`) replace the
//!    corresponding variables before validation.
//! 2. The process environment (read through figment's `Env` provider, raw and case-preserved).
//! 3. An env file ([`EnvFile`]), whose values never override variables already present in the
//!    environment; within the file the last assignment of a name wins. The file is only
//!    *read*: the process environment is never modified.
//!    * By default, `.env` in the server's **current working directory** (not searched
//!      upwards). Clients start stdio servers in the project they opened, so this file belongs
//!      to whoever wrote the project: only the variables classified [`Trust::Project`] are
//!      taken from it, the others are ignored and named in [`EnvFileUse::ignored`]
//!      (`docs/configuration.md`, "The `.env` file"). A file that cannot be parsed is
//!      reported as a configuration problem.
//!    * `--env-file PATH` ([`EnvFile::Named`]): a file the operator chose; every variable in it
//!      is taken, and a file that cannot be read is the only problem reported.
//!    * `--no-env-file` ([`EnvFile::Disabled`]): none.
//! 4. For the claude_code continuation/mediation settings, the operator preset
//!    ([`presets`]), then the built-in defaults.
//!
//! A variable that is *set*, even to an empty string, wins over its legacy alias, the preset
//! and the default (`CLAUDE_AGENT_MCP_STATE_DIR=""` is the CWD; `CLAUDE_AGENT_MCP_LOCK_TTL=""`
//! is an invalid integer).
//!
//! # Parsing conventions
//! * bool: trimmed, lower-cased ∈ {`true`, `1`, `yes`}; anything else (even empty) is false.
//! * int: a decimal integer after trimming; anything else is a problem
//!   `<VAR>='<value>' is not a valid integer`.
//! * list: comma-separated, items trimmed, empty items dropped.
//! * path: absolute against the CWD, canonicalised with symlinks resolved; a path that does
//!   not exist (yet) is resolved up to its longest existing ancestor and the rest is appended
//!   lexically normalised ([`resolve_path`](crate::paths::resolve_path)).
//!
//! # Validation
//! Every problem is collected and reported together by [`ConfigErrors`]. The API-key check of
//! the `api` backend is a later startup step: see [`Config::api_key_problem`].

pub mod presets;
mod spend;
pub mod telemetry;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

pub use agent_core::model::ClaudeCodeMode;
use agent_core::pyfmt;
pub use agent_core::settings::{ContinuationSettings, MediationSettings};
use serde::Serialize;

use crate::paths::resolve_path;

/// The names of every environment variable this crate reads, each with who may set it
/// ([`Trust`]): the one place a variable is declared, so a new one cannot go unclassified.
pub mod vars {
    use super::Reason::{Executes, Files, Limits, Listens, Policy, SendsCredentials};
    use super::Trust::{self, Operator, Project};

    /// Declares each `NAME = "VARIABLE" => trust;` as a `pub const NAME: &str` and lists them
    /// all in [`ALL`].
    macro_rules! variables {
        ($($name:ident = $value:literal => $trust:expr;)*) => {
            $(pub const $name: &str = $value;)*

            /// Every variable with who may set it, in declaration order.
            pub const ALL: &[(&str, Trust)] = &[$(($value, $trust)),*];
        };
    }

    variables! {
        ANTHROPIC_API_KEY = "ANTHROPIC_API_KEY" => Project;
        ANTHROPIC_BASE_URL = "ANTHROPIC_BASE_URL" => Operator(SendsCredentials);
        MODE = "CLAUDE_AGENT_MCP_MODE" => Operator(Policy);
        TRANSPORT = "CLAUDE_AGENT_MCP_TRANSPORT" => Operator(Listens);
        HOST = "CLAUDE_AGENT_MCP_HOST" => Operator(Listens);
        PORT = "CLAUDE_AGENT_MCP_PORT" => Operator(Listens);
        STATE_DIR = "CLAUDE_AGENT_MCP_STATE_DIR" => Operator(Files);
        LEGACY_STATE_DIR = "CLAUDE_AGENT_STATE_DIR" => Operator(Files);
        DB_PATH = "CLAUDE_AGENT_MCP_DB_PATH" => Operator(Files);
        ARTIFACT_DIR = "CLAUDE_AGENT_MCP_ARTIFACT_DIR" => Operator(Files);
        DATABASE_URL = "CLAUDE_AGENT_MCP_DATABASE_URL" => Operator(Files);
        DATABASE_MAX_CONNECTIONS = "CLAUDE_AGENT_MCP_DATABASE_MAX_CONNECTIONS" => Operator(Limits);
        DATABASE_LISTEN = "CLAUDE_AGENT_MCP_DATABASE_LISTEN" => Operator(Policy);
        LOG_LEVEL = "CLAUDE_AGENT_MCP_LOG_LEVEL" => Project;
        LEGACY_LOG_LEVEL = "CLAUDE_AGENT_LOG_LEVEL" => Project;
        MODEL = "CLAUDE_AGENT_MCP_MODEL" => Project;
        LEGACY_MODEL = "CLAUDE_AGENT_MODEL" => Project;
        LOCK_TTL = "CLAUDE_AGENT_MCP_LOCK_TTL" => Operator(Limits);
        LEGACY_LOCK_TTL = "CLAUDE_AGENT_LOCK_TTL_SECONDS" => Operator(Limits);
        ALLOWED_DIRS = "CLAUDE_AGENT_MCP_ALLOWED_DIRS" => Operator(Files);
        LEGACY_ALLOWED_DIRS = "CLAUDE_AGENT_ALLOWED_DIRS" => Operator(Files);
        MAX_ARTIFACT_BYTES = "CLAUDE_AGENT_MCP_MAX_ARTIFACT_BYTES" => Operator(Limits);
        LEGACY_MAX_ARTIFACT_BYTES = "CLAUDE_AGENT_MAX_ARTIFACT_BYTES" => Operator(Limits);
        OPERATOR_PROFILE = "CLAUDE_AGENT_MCP_OPERATOR_PROFILE" => Operator(Policy);
        EXECUTION_BACKEND = "CLAUDE_AGENT_MCP_EXECUTION_BACKEND" => Operator(Executes);
        API_MAX_RETRIES = "CLAUDE_AGENT_MCP_API_MAX_RETRIES" => Operator(Limits);
        API_TIMEOUT = "CLAUDE_AGENT_MCP_API_TIMEOUT" => Operator(Limits);
        BUILTIN_TOOLS = "CLAUDE_AGENT_MCP_BUILTIN_TOOLS" => Project;
        MAX_EVIDENCE_BYTES = "CLAUDE_AGENT_MCP_MAX_EVIDENCE_BYTES" => Operator(Limits);
        CLAUDE_CODE_CLI_PATH = "CLAUDE_AGENT_MCP_CLAUDE_CODE_CLI_PATH" => Operator(Executes);
        CLAUDE_CODE_TIMEOUT = "CLAUDE_AGENT_MCP_CLAUDE_CODE_TIMEOUT" => Operator(Limits);
        CLAUDE_CODE_MODE = "CLAUDE_AGENT_MCP_CLAUDE_CODE_MODE" => Operator(Executes);
        CLAUDE_CODE_ENV_PASSTHROUGH = "CLAUDE_AGENT_MCP_CLAUDE_CODE_ENV_PASSTHROUGH" => Operator(SendsCredentials);
        CLAUDE_CODE_SETTING_SOURCES = "CLAUDE_AGENT_MCP_CLAUDE_CODE_SETTING_SOURCES" => Operator(Executes);
        LIMITED_TOOL_FORWARDING = "CLAUDE_AGENT_MCP_CLAUDE_CODE_LIMITED_TOOL_FORWARDING" => Operator(Policy);
        MAX_CONTINUATION_TURNS = "CLAUDE_AGENT_MCP_CLAUDE_CODE_MAX_CONTINUATION_TURNS" => Operator(Policy);
        MAX_CONTINUATION_WARNINGS = "CLAUDE_AGENT_MCP_CLAUDE_CODE_MAX_CONTINUATION_WARNINGS" => Operator(Policy);
        MAX_CONTINUATION_FORWARDING_EVENTS = "CLAUDE_AGENT_MCP_CLAUDE_CODE_MAX_CONTINUATION_FORWARDING_EVENTS" => Operator(Policy);
        INCLUDE_VERIFICATION_CONTEXT = "CLAUDE_AGENT_MCP_CLAUDE_CODE_INCLUDE_VERIFICATION_CONTEXT" => Operator(Policy);
        INCLUDE_TOOL_DOWNGRADE_CONTEXT = "CLAUDE_AGENT_MCP_CLAUDE_CODE_INCLUDE_TOOL_DOWNGRADE_CONTEXT" => Operator(Policy);
        ENABLE_EXECUTION_MEDIATION = "CLAUDE_AGENT_MCP_CLAUDE_CODE_ENABLE_EXECUTION_MEDIATION" => Operator(Executes);
        MAX_MEDIATED_ACTIONS_PER_TURN = "CLAUDE_AGENT_MCP_CLAUDE_CODE_MAX_MEDIATED_ACTIONS_PER_TURN" => Operator(Executes);
        ALLOWED_MEDIATED_ACTION_TYPES = "CLAUDE_AGENT_MCP_CLAUDE_CODE_ALLOWED_MEDIATED_ACTION_TYPES" => Operator(Executes);
        INCLUDE_MEDIATED_RESULTS_IN_CONTINUATION = "CLAUDE_AGENT_MCP_CLAUDE_CODE_INCLUDE_MEDIATED_RESULTS_IN_CONTINUATION" => Operator(Policy);
        MAX_MEDIATED_WORKFLOW_STEPS = "CLAUDE_AGENT_MCP_CLAUDE_CODE_MAX_MEDIATED_WORKFLOW_STEPS" => Operator(Executes);
        ALLOWED_MEDIATED_TOOLS = "CLAUDE_AGENT_MCP_CLAUDE_CODE_ALLOWED_MEDIATED_TOOLS" => Operator(Executes);
        DENIED_MEDIATED_TOOLS = "CLAUDE_AGENT_MCP_CLAUDE_CODE_DENIED_MEDIATED_TOOLS" => Operator(Executes);
        MAX_SESSION_MEDIATED_APPROVALS = "CLAUDE_AGENT_MCP_CLAUDE_CODE_MAX_SESSION_MEDIATED_APPROVALS" => Operator(Executes);
        INCLUDE_REJECTED_MEDIATION_IN_CONTINUATION = "CLAUDE_AGENT_MCP_CLAUDE_CODE_INCLUDE_REJECTED_MEDIATION_IN_CONTINUATION" => Operator(Policy);
        MEDIATION_POLICY_PROFILE = "CLAUDE_AGENT_MCP_CLAUDE_CODE_MEDIATION_POLICY_PROFILE" => Operator(Policy);
        FEDERATION_ENABLED = "CLAUDE_AGENT_MCP_FEDERATION_ENABLED" => Operator(Executes);
        FEDERATION_CONFIG = "CLAUDE_AGENT_MCP_FEDERATION_CONFIG" => Operator(Executes);
        ALLOWED_ORIGINS = "CLAUDE_AGENT_MCP_ALLOWED_ORIGINS" => Operator(Listens);
        HTTP_BEARER_TOKEN = "CLAUDE_AGENT_MCP_HTTP_BEARER_TOKEN" => Operator(Listens);
        HTTP_HEADER_TIMEOUT = "CLAUDE_AGENT_MCP_HTTP_HEADER_TIMEOUT" => Operator(Limits);
        HTTP_MAX_CONNECTIONS = "CLAUDE_AGENT_MCP_HTTP_MAX_CONNECTIONS" => Operator(Limits);
        METRICS_ADDR = "CLAUDE_AGENT_MCP_METRICS_ADDR" => Operator(Listens);
        MAX_BUDGET_USD = "CLAUDE_AGENT_MCP_MAX_BUDGET_USD" => Operator(Limits);
        MAX_TOTAL_TOKENS = "CLAUDE_AGENT_MCP_MAX_TOTAL_TOKENS" => Operator(Limits);
        ALLOWED_MODELS = "CLAUDE_AGENT_MCP_ALLOWED_MODELS" => Operator(Policy);
        MODEL_PRICES = "CLAUDE_AGENT_MCP_MODEL_PRICES" => Operator(Limits);
        OTEL_RECORD_CONTENT = "CLAUDE_AGENT_MCP_OTEL_RECORD_CONTENT" => Operator(SendsCredentials);
        OTEL_EXPORTER_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT" => Operator(SendsCredentials);
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" => Operator(SendsCredentials);
        OTEL_EXPORTER_OTLP_HEADERS = "OTEL_EXPORTER_OTLP_HEADERS" => Operator(SendsCredentials);
        OTEL_EXPORTER_OTLP_TRACES_HEADERS = "OTEL_EXPORTER_OTLP_TRACES_HEADERS" => Operator(SendsCredentials);
        OTEL_SERVICE_NAME = "OTEL_SERVICE_NAME" => Operator(Policy);
        OTEL_RESOURCE_ATTRIBUTES = "OTEL_RESOURCE_ATTRIBUTES" => Operator(Policy);
        OTEL_TRACES_SAMPLER = "OTEL_TRACES_SAMPLER" => Operator(Policy);
        OTEL_TRACES_SAMPLER_ARG = "OTEL_TRACES_SAMPLER_ARG" => Operator(Policy);
    }

    /// Who may set `name`; `None` for a name this crate does not read.
    pub fn trust(name: &str) -> Option<Trust> {
        ALL.iter()
            .find(|(known, _)| *known == name)
            .map(|(_, trust)| *trust)
    }
}

/// The C library's variables that the binary reads before any configuration is loaded
/// (`bins/claude-agent-mcp/src/arena.rs`): not configuration, since they change no field of
/// [`Config`] and a `.env` file cannot set them (glibc reads only the process environment).
pub mod libc_vars {
    /// The number of malloc arenas; the server sets it to 1 unless the operator set it.
    pub const MALLOC_ARENA_MAX: &str = "MALLOC_ARENA_MAX";
    /// All of glibc's tunables, `name=value` entries separated by `:`.
    pub const GLIBC_TUNABLES: &str = "GLIBC_TUNABLES";
    /// The arena limit's name among [`GLIBC_TUNABLES`].
    pub const TUNABLE_ARENA_MAX: &str = "glibc.malloc.arena_max";
}

/// Who may set a variable: the classification every entry of [`vars`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Trust {
    /// Also a `.env` found in the working directory (a project's file): the variable cannot
    /// choose what is executed, where credentials or prompts are sent, what may be read or
    /// written, or what address is bound, and it is no limit a file could widen.
    Project,
    /// Only the operator: the process environment, a file named with `--env-file`, a flag.
    Operator(Reason),
}

/// Why a variable is [`Trust::Operator`] only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Reason {
    /// It chooses a program to run, or what a run may execute (backend, CLI path, federation,
    /// mediation).
    Executes,
    /// It chooses where the API key and the prompts are sent.
    SendsCredentials,
    /// It chooses what may be read or written (allowed directories, state, database,
    /// artifacts).
    Files,
    /// It chooses what address is bound or who may connect.
    Listens,
    /// It is a resource limit a file could widen (timeouts, retries, sizes, the lock lease).
    Limits,
    /// It is the operator's policy (runtime mode, preset, what continuation prompts carry).
    Policy,
}

impl Reason {
    /// A short phrase for documentation and reports.
    pub const fn describe(self) -> &'static str {
        match self {
            Reason::Executes => "chooses what is executed",
            Reason::SendsCredentials => "chooses where the API key and prompts are sent",
            Reason::Files => "chooses what may be read or written",
            Reason::Listens => "chooses what is bound and who may connect",
            Reason::Limits => "a limit the file could widen",
            Reason::Policy => "the operator's policy",
        }
    }
}

/// The name of the env file looked for in the working directory.
pub const DOTENV: &str = ".env";

/// Which env file [`load`] reads (`--env-file`, `--no-env-file`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EnvFile {
    /// `.env` in the working directory when there is one, for [`Trust::Project`] variables
    /// only.
    #[default]
    Implicit,
    /// A file the operator named (relative to the working directory): every variable in it
    /// is taken; it must exist and be readable.
    Named(PathBuf),
    /// No env file.
    Disabled,
}

/// The env file a configuration was read with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvFileUse {
    /// The file read.
    pub path: PathBuf,
    /// Named by the operator (`--env-file`), rather than found in the working directory.
    pub named: bool,
    /// The variables the file assigns that were not taken (an implicit file's
    /// [`Trust::Operator`] variables), sorted; never their values.
    pub ignored: Vec<String>,
}

impl EnvFileUse {
    /// The one warning for the ignored variables, when there are any.
    pub fn warning(&self) -> Option<String> {
        if self.ignored.is_empty() {
            return None;
        }
        let allowed: Vec<&str> = vars::ALL
            .iter()
            .filter(|(_, trust)| *trust == Trust::Project)
            .map(|(name, _)| *name)
            .collect();
        Some(format!(
            "claude-agent-mcp: warning: ignored {} in {}: a {DOTENV} found in the working \
             directory may set only {}. To use every setting of a file you trust, name it with \
             --env-file PATH (see docs/configuration.md, \"The .env file\").",
            self.ignored.join(", "),
            self.path.display(),
            allowed.join(", ")
        ))
    }
}

/// The prefix of this server's own variables (current and legacy names): none of them may be
/// passed through to a child process (`CLAUDE_AGENT_MCP_HTTP_BEARER_TOKEN` among them).
pub const SERVER_VAR_PREFIX: &str = "CLAUDE_AGENT_";

/// Built-in default values.
pub mod defaults {
    pub const HOST: &str = "127.0.0.1";
    pub const PORT: i64 = 8000;
    pub const STATE_DIR: &str = ".state";
    pub const DB_FILE_NAME: &str = "claude-agent-mcp.db";
    pub const ARTIFACT_DIR_NAME: &str = "artifacts";
    pub const MODEL: &str = "claude-sonnet-4-6";
    pub const LOCK_TTL_SECS: i64 = 300;
    pub const MAX_ARTIFACT_BYTES: i64 = 10 * 1024 * 1024;
    pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
    pub const API_MAX_RETRIES: u32 = 2;
    pub const API_TIMEOUT_SECS: u64 = 600;
    pub const MAX_EVIDENCE_BYTES: u64 = 256 * 1024;
    pub const CLAUDE_CODE_TIMEOUT_SECS: i64 = 300;
    pub const HTTP_HEADER_TIMEOUT_SECS: u64 = 10;
    pub const HTTP_MAX_CONNECTIONS: u64 = 256;
    /// The largest `CLAUDE_AGENT_MCP_HTTP_MAX_CONNECTIONS` accepted.
    pub const HTTP_MAX_CONNECTIONS_LIMIT: u64 = 1_000_000;
    /// The PostgreSQL store's pool size when `CLAUDE_AGENT_MCP_DATABASE_MAX_CONNECTIONS` is
    /// unset (the store's own default, `agent_store::postgres::DEFAULT_MAX_CONNECTIONS`, which a
    /// test of the binary holds equal).
    pub const DATABASE_MAX_CONNECTIONS: u64 = 8;
    /// The largest `CLAUDE_AGENT_MCP_DATABASE_MAX_CONNECTIONS` accepted.
    pub const DATABASE_MAX_CONNECTIONS_LIMIT: u64 = 1_000;
    /// Whether the PostgreSQL store listens for cancel requests when
    /// `CLAUDE_AGENT_MCP_DATABASE_LISTEN` is unset.
    pub const DATABASE_LISTEN: bool = true;
}

agent_core::string_enum! {
    /// The runtime mode (`docs/reference/policy.md#6-runtime-modes`).
    RuntimeMode {
        Standard => "standard",
        ApntalkVerification => "apntalk_verification",
    }
}

agent_core::string_enum! {
    /// The MCP transport.
    Transport {
        Stdio => "stdio",
        StreamableHttp => "streamable-http",
    }
}

agent_core::string_enum! {
    /// A settings file the Claude Code CLI may load (`--setting-sources`): the user's own
    /// (`~/.claude/settings.json`), or the working directory's shared or local ones.
    SettingSource {
        User => "user",
        Project => "project",
        Local => "local",
    }
}

agent_core::string_enum! {
    /// The execution backend.
    BackendKind {
        Api => "api",
        ClaudeCode => "claude_code",
    }
}

agent_core::string_enum! {
    /// The log level (Python level names).
    LogLevel {
        Debug => "DEBUG",
        Info => "INFO",
        Warning => "WARNING",
        Error => "ERROR",
        Critical => "CRITICAL",
    }
}

impl LogLevel {
    /// The nearest `tracing` level (`CRITICAL` maps to `ERROR`).
    pub const fn tracing_level(self) -> tracing::Level {
        match self {
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warning => tracing::Level::WARN,
            LogLevel::Error | LogLevel::Critical => tracing::Level::ERROR,
        }
    }
}

/// A secret string (API key, bearer token). `Debug` never shows it and it does not
/// implement `Serialize`; read it with [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("Secret(<empty>)")
        } else {
            f.write_str("Secret(<redacted>)")
        }
    }
}

/// The session store `CLAUDE_AGENT_MCP_DATABASE_URL` selects (`docs/scaling.md#the-shared-store`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Database {
    /// The embedded SQLite store at [`Config::db_path`] (unset, empty, or a `sqlite://` URL).
    Sqlite,
    /// The PostgreSQL store (a `postgres://` or `postgresql://` URL).
    Postgresql { url: SecretUrl },
}

impl Database {
    /// The store's name as the status resource and `doctor` show it: `sqlite` or `postgresql`.
    pub const fn kind(&self) -> &'static str {
        match self {
            Database::Sqlite => "sqlite",
            Database::Postgresql { .. } => "postgresql",
        }
    }

    /// Which store a database URL selects (the rule of `CLAUDE_AGENT_MCP_DATABASE_URL`, for a
    /// URL given elsewhere, e.g. `migrate-store --to`).
    pub fn parse_url(value: &str) -> Result<Database, String> {
        Self::parse(value).map(|(database, _)| database)
    }

    /// Parses the variable's value; `Ok(None)` keeps SQLite at the configured path, `Ok(Some)`
    /// of a `sqlite://` URL names the database file.
    fn parse(value: &str) -> Result<(Database, Option<&str>), String> {
        let value = value.trim();
        if value.is_empty() {
            return Ok((Database::Sqlite, None));
        }
        let scheme_end = value.find("://").map(|i| i + 3);
        let scheme = scheme_end.map(|end| value[..end].to_ascii_lowercase());
        match scheme.as_deref() {
            Some("postgres://" | "postgresql://") => Ok((
                Database::Postgresql {
                    url: SecretUrl(value.to_owned()),
                },
                None,
            )),
            Some("sqlite://") => {
                let path = &value["sqlite://".len()..];
                // `sqlite://` options (`?mode=…`) are not ours: only the path is taken.
                let path = path.split('?').next().unwrap_or_default();
                Ok((Database::Sqlite, Some(path).filter(|p| !p.is_empty())))
            }
            _ => Err(format!(
                "{}='{}' is not a supported database URL: use postgres://…, postgresql://… or sqlite://…",
                vars::DATABASE_URL,
                agent_core::text::redact_url(value)
            )),
        }
    }
}

/// A URL that may hold a password (the database's, the trace collector's): `Debug` and
/// `Serialize` show it redacted ([`agent_core::text::redact_url`]); read it with
/// [`SecretUrl::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL as configured, password included: for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password redacted: for every output.
    pub fn redacted(&self) -> String {
        agent_core::text::redact_url(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.redacted())
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

/// Command-line overrides (`docs/reference/status.md#2-command-line`); `None` leaves the
/// environment value in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CliOverrides {
    pub mode: Option<String>,
    pub transport: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// `--env-file PATH` / `--no-env-file`.
    pub env_file: EnvFile,
}

/// The resolved, validated configuration. Secrets are redacted in `Debug` and absent from
/// `Serialize`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// `CLAUDE_AGENT_MCP_MODE` / `--mode`.
    pub mode: RuntimeMode,
    /// `CLAUDE_AGENT_MCP_TRANSPORT` / `--transport`.
    pub transport: Transport,
    /// `CLAUDE_AGENT_MCP_HOST` / `--host` (trimmed).
    pub host: String,
    /// `CLAUDE_AGENT_MCP_PORT` / `--port`. Only range-checked (1–65535) for streamable-http;
    /// see [`Config::http_port`].
    pub port: i64,
    /// The canonical server working directory all relative paths were resolved against.
    pub cwd: PathBuf,
    /// `CLAUDE_AGENT_MCP_STATE_DIR` (legacy `CLAUDE_AGENT_STATE_DIR`), default `<cwd>/.state`.
    pub state_dir: PathBuf,
    /// `CLAUDE_AGENT_MCP_DB_PATH`, default `<state_dir>/claude-agent-mcp.db`.
    pub db_path: PathBuf,
    /// `CLAUDE_AGENT_MCP_ARTIFACT_DIR`, default `<state_dir>/artifacts`.
    pub artifact_dir: PathBuf,
    /// `CLAUDE_AGENT_MCP_DATABASE_URL`: which session store serves ([`Database`]); SQLite at
    /// `db_path` when unset, empty or `sqlite://`.
    pub database: Database,
    /// `CLAUDE_AGENT_MCP_LOG_LEVEL` (legacy `CLAUDE_AGENT_LOG_LEVEL`).
    pub log_level: LogLevel,
    /// `CLAUDE_AGENT_MCP_MODEL` (legacy `CLAUDE_AGENT_MODEL`), not trimmed.
    pub model: String,
    /// `CLAUDE_AGENT_MCP_LOCK_TTL` (legacy `CLAUDE_AGENT_LOCK_TTL_SECONDS`); not range-checked.
    pub lock_ttl_secs: i64,
    /// `CLAUDE_AGENT_MCP_ALLOWED_DIRS` (legacy `CLAUDE_AGENT_ALLOWED_DIRS`), canonicalised;
    /// `[cwd]` when unset or empty. May be empty when set to e.g. `","`.
    pub allowed_dirs: Vec<PathBuf>,
    /// `CLAUDE_AGENT_MCP_MAX_ARTIFACT_BYTES` (legacy `CLAUDE_AGENT_MAX_ARTIFACT_BYTES`).
    pub max_artifact_bytes: i64,
    /// `CLAUDE_AGENT_MCP_OPERATOR_PROFILE`, trimmed and lower-cased; `None` when unset or
    /// empty. Reported as given even when it is not a known preset.
    pub operator_profile: Option<String>,
    /// `CLAUDE_AGENT_MCP_EXECUTION_BACKEND`.
    pub backend: BackendKind,
    /// `ANTHROPIC_API_KEY` (may be empty; see [`Config::api_key_problem`]).
    #[serde(skip)]
    pub anthropic_api_key: Secret,
    /// `ANTHROPIC_BASE_URL` (trimmed), default `https://api.anthropic.com` when unset or empty.
    pub anthropic_base_url: String,
    /// `CLAUDE_AGENT_MCP_API_MAX_RETRIES`, default 2.
    pub api_max_retries: u32,
    /// `CLAUDE_AGENT_MCP_API_TIMEOUT` in seconds, default 600.
    pub api_timeout_secs: u64,
    /// `CLAUDE_AGENT_MCP_MAX_EVIDENCE_BYTES`, default 262144: evidence and attachment content
    /// given to the model, in total (`docs/reference/verification.md#10-evidence-contents`).
    pub max_evidence_bytes: u64,
    /// `CLAUDE_AGENT_MCP_BUILTIN_TOOLS` (bool), default true: the api backend's built-in
    /// workspace tools.
    pub builtin_tools: bool,
    /// `CLAUDE_AGENT_MCP_CLAUDE_CODE_CLI_PATH` (trimmed), `None` when unset or empty. Not
    /// resolved: the backend checks it is an existing regular file.
    pub claude_code_cli_path: Option<PathBuf>,
    /// `CLAUDE_AGENT_MCP_CLAUDE_CODE_TIMEOUT` in seconds, default 300.
    pub claude_code_timeout_secs: i64,
    /// `CLAUDE_AGENT_MCP_CLAUDE_CODE_LIMITED_TOOL_FORWARDING`, default false.
    pub limited_tool_forwarding: bool,
    /// `CLAUDE_AGENT_MCP_CLAUDE_CODE_MODE`, default `native` (an addition).
    pub claude_code_mode: ClaudeCodeMode,
    /// `CLAUDE_AGENT_MCP_CLAUDE_CODE_ENV_PASSTHROUGH` (list), default empty: names of further
    /// variables the Claude Code CLI inherits from the server's environment.
    pub claude_code_env_passthrough: Vec<String>,
    /// `CLAUDE_AGENT_MCP_CLAUDE_CODE_SETTING_SOURCES` (list): the settings files the Claude
    /// Code CLI loads (`--setting-sources`). `None` when unset: the backend's default (the
    /// user's own settings only; a workspace's `.claude/` settings can run hooks).
    pub claude_code_setting_sources: Option<Vec<SettingSource>>,
    /// The continuation window (`docs/reference/backends.md#56-continuation-context`),
    /// preset-aware.
    pub continuation: ContinuationSettings,
    /// The mediation settings (`docs/reference/mediation.md#10-policy-profile-and-settings`),
    /// preset-aware except the three lists.
    pub mediation: MediationSettings,
    /// `CLAUDE_AGENT_MCP_FEDERATION_ENABLED`, default false.
    pub federation_enabled: bool,
    /// `CLAUDE_AGENT_MCP_FEDERATION_CONFIG` (path), `None` when unset or empty.
    pub federation_config: Option<PathBuf>,
    /// `CLAUDE_AGENT_MCP_ALLOWED_ORIGINS` (list), default empty: extra allowed `Origin`s.
    pub allowed_origins: Vec<String>,
    /// `CLAUDE_AGENT_MCP_HTTP_BEARER_TOKEN` (trimmed), `None` when unset or empty.
    #[serde(skip)]
    pub http_bearer_token: Option<Secret>,
    /// `CLAUDE_AGENT_MCP_HTTP_HEADER_TIMEOUT` in seconds, default 10, at least 1: the time an
    /// HTTP connection has to send a request's head (and the HTTP/1.1 keep-alive idle time).
    pub http_header_timeout_secs: u64,
    /// `CLAUDE_AGENT_MCP_HTTP_MAX_CONNECTIONS`, default 256, 1 to 1,000,000: HTTP
    /// connections served at once.
    pub http_max_connections: u64,
    /// `CLAUDE_AGENT_MCP_DATABASE_MAX_CONNECTIONS`, default 8, 1 to 1,000: the PostgreSQL
    /// store's query pool per process (its `LISTEN` connection is one more); ignored on SQLite.
    pub database_max_connections: u64,
    /// `CLAUDE_AGENT_MCP_DATABASE_LISTEN`, default true: whether the PostgreSQL store keeps a
    /// `LISTEN` connection for cancel requests; false behind a pooler in transaction mode,
    /// where that connection would hear nothing (cancels are then found by polling); ignored
    /// on SQLite.
    pub database_listen: bool,
    /// `CLAUDE_AGENT_MCP_METRICS_ADDR` (`IP:PORT`), `None` when unset or empty: the address
    /// that serves `/metrics`, `/healthz` and `/readyz` in any transport
    /// (`docs/observability.md`). Off loopback it requires the bearer token, which then
    /// guards `/metrics` there too.
    pub metrics_addr: Option<SocketAddr>,
    /// `CLAUDE_AGENT_MCP_MAX_BUDGET_USD`, `CLAUDE_AGENT_MCP_MAX_TOTAL_TOKENS` (caps per
    /// profile), `CLAUDE_AGENT_MCP_ALLOWED_MODELS`, `CLAUDE_AGENT_MCP_MODEL_PRICES`, with the
    /// model above as the default (`docs/configuration.md#budgets-models-and-prices`).
    #[serde(skip)]
    pub spend: agent_core::spend::SpendPolicy,
    /// The OpenTelemetry trace settings (`OTEL_EXPORTER_OTLP_ENDPOINT`, …,
    /// `CLAUDE_AGENT_MCP_OTEL_RECORD_CONTENT`; `docs/observability.md#traces`).
    pub telemetry: telemetry::Telemetry,
    /// The env file read, if any (set by [`load_with`]; `None` from [`from_vars`]).
    pub env_file: Option<EnvFileUse>,
}

impl Config {
    /// The backend start-up check (`docs/reference/policy.md#92-startup-sequence` step 5): the
    /// problem when the `api` backend is selected without an API key.
    pub fn api_key_problem(&self) -> Option<String> {
        (self.backend == BackendKind::Api && self.anthropic_api_key.expose().trim().is_empty()).then(|| {
            "ANTHROPIC_API_KEY is required for the 'api' execution backend. Set the environment variable or use a .env file."
                .to_owned()
        })
    }

    /// The port as a socket port, when it is one (always for a validated streamable-http
    /// configuration).
    pub fn http_port(&self) -> Option<u16> {
        u16::try_from(self.port).ok().filter(|p| *p != 0)
    }

    /// Whether the operator profile names a known preset.
    pub fn operator_profile_is_known(&self) -> bool {
        self.operator_profile
            .as_deref()
            .and_then(presets::preset)
            .is_some()
    }
}

/// All configuration problems, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("claude-agent-mcp startup configuration error(s):")?;
        for problem in &self.0 {
            write!(f, "\n  • {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Loads the configuration: the env file `overrides.env_file` chooses under the process
/// environment, then `overrides`.
pub fn load(cwd: &Path, overrides: &CliOverrides) -> Result<Config, ConfigErrors> {
    load_with(process_env(), cwd, overrides)
}

/// Like [`load`], with `env` standing for the process environment: the env file fills in only
/// the names `env` does not contain.
pub fn load_with(
    env: BTreeMap<String, String>,
    cwd: &Path,
    overrides: &CliOverrides,
) -> Result<Config, ConfigErrors> {
    let mut vars = env;
    let mut problems = Vec::new();
    let mut used = None;
    match &overrides.env_file {
        EnvFile::Disabled => {}
        EnvFile::Named(path) => {
            let path = cwd.join(path);
            // The operator asked for this file: without it the configuration is not the one
            // they meant, so its absence is the only thing worth reporting.
            let file = read_env_file(&path).map_err(|e| {
                ConfigErrors(vec![format!(
                    "cannot read the env file {} named by --env-file: {e}",
                    path.display()
                )])
            })?;
            fill_in(&mut vars, file);
            used = Some(EnvFileUse {
                path,
                named: true,
                ignored: Vec::new(),
            });
        }
        EnvFile::Implicit => {
            let path = cwd.join(DOTENV);
            if path.is_file() {
                match read_env_file(&path) {
                    Ok(file) => {
                        let (taken, ignored) = project_only(file);
                        fill_in(&mut vars, taken);
                        used = Some(EnvFileUse {
                            path,
                            named: false,
                            ignored,
                        });
                    }
                    Err(e) => problems.push(format!("cannot read {}: {e}", path.display())),
                }
            }
        }
    }
    let mut config = resolve(&vars, cwd, overrides, problems)?;
    config.env_file = used;
    Ok(config)
}

/// Adds the file's variables the environment does not set.
fn fill_in(vars: &mut BTreeMap<String, String>, file: BTreeMap<String, String>) {
    for (name, value) in file {
        vars.entry(name).or_insert(value);
    }
}

/// Splits an implicit `.env` into the variables it may set and the names of the configuration
/// variables it may not (`docs/configuration.md`, "The `.env` file"). Names this crate does not
/// read stay: they change nothing here and a project's `.env` has plenty of its own.
fn project_only(file: BTreeMap<String, String>) -> (BTreeMap<String, String>, Vec<String>) {
    let mut ignored = Vec::new();
    let taken = file
        .into_iter()
        .filter(|(name, _)| match vars::trust(name) {
            Some(Trust::Operator(_)) => {
                ignored.push(name.clone());
                false
            }
            Some(Trust::Project) | None => true,
        })
        .collect();
    (taken, ignored)
}

/// Resolves and validates the configuration from an explicit variable map (no `.env`, no
/// process environment).
pub fn from_vars(
    vars: &BTreeMap<String, String>,
    cwd: &Path,
    overrides: &CliOverrides,
) -> Result<Config, ConfigErrors> {
    resolve(vars, cwd, overrides, Vec::new())
}

/// The process environment as raw strings (figment's `Env` provider, names case-preserved,
/// empty values kept).
pub fn process_env() -> BTreeMap<String, String> {
    figment::providers::Env::raw()
        .lowercase(false)
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value))
        .collect()
}

/// Reads an env file into a map without touching the process environment. The last
/// assignment of a name wins. `Err` when the file cannot be opened, read or parsed.
pub fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>, dotenvy::Error> {
    let mut vars = BTreeMap::new();
    for item in dotenvy::from_path_iter(path)? {
        let (name, value) = item?;
        vars.insert(name, value);
    }
    Ok(vars)
}

/// Whether `host` names the loopback interface: `localhost`, `127.0.0.0/8`, `::1` (also in
/// brackets, or IPv4-mapped).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// Reads raw variables and collects parse problems.
struct Reader<'a> {
    vars: &'a BTreeMap<String, String>,
    problems: Vec<String>,
}

impl<'a> Reader<'a> {
    /// The value of `name` with the name read, when set.
    fn get(&self, name: &'static str) -> Option<(&'static str, &'a str)> {
        debug_assert!(
            vars::trust(name).is_some(),
            "{name} is read but not declared (and classified) in `vars`"
        );
        self.vars.get(name).map(|value| (name, value.as_str()))
    }

    /// The new name when set (even to an empty string), else its legacy alias.
    fn aliased(&self, name: &'static str, legacy: &'static str) -> Option<(&'static str, &'a str)> {
        self.get(name).or_else(|| self.get(legacy))
    }

    fn raw(&self, name: &'static str) -> Option<&'a str> {
        self.get(name).map(|(_, value)| value)
    }

    /// Parses an integer; a problem (and `None`) when the value is not one.
    fn int(&mut self, value: Option<(&'static str, &str)>, default: i64) -> Option<i64> {
        self.number(value, default, "integer")
    }

    /// Parses the integer variable `name` when set.
    fn int_var(&mut self, name: &'static str, default: i64) -> Option<i64> {
        let value = self.get(name);
        self.int(value, default)
    }

    fn number<T: std::str::FromStr>(
        &mut self,
        value: Option<(&'static str, &str)>,
        default: T,
        kind: &str,
    ) -> Option<T> {
        let Some((name, raw)) = value else {
            return Some(default);
        };
        match raw.trim().parse::<T>() {
            Ok(parsed) => Some(parsed),
            Err(_) => {
                self.problems.push(format!(
                    "{name}={} is not a valid {kind}",
                    pyfmt::repr_str(raw)
                ));
                None
            }
        }
    }

    fn bool(&self, name: &'static str, default: bool) -> bool {
        self.raw(name).map_or(default, parse_bool)
    }

    fn list(&self, name: &'static str) -> Vec<String> {
        self.raw(name).map(parse_list).unwrap_or_default()
    }
}

fn parse_bool(value: &str) -> bool {
    matches!(value.trim().to_lowercase().as_str(), "true" | "1" | "yes")
}

fn parse_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

fn normalise_choice(value: &str) -> String {
    value.trim().to_lowercase()
}

fn resolve(
    vars: &BTreeMap<String, String>,
    cwd: &Path,
    overrides: &CliOverrides,
    problems: Vec<String>,
) -> Result<Config, ConfigErrors> {
    let cwd = resolve_path(cwd, Path::new(""));
    let mut r = Reader { vars, problems };

    // --- Core -----------------------------------------------------------------------------
    let mode_raw = normalise_choice(
        overrides
            .mode
            .as_deref()
            .unwrap_or_else(|| r.raw(vars::MODE).unwrap_or(RuntimeMode::Standard.as_str())),
    );
    let transport_raw = normalise_choice(
        overrides
            .transport
            .as_deref()
            .unwrap_or_else(|| r.raw(vars::TRANSPORT).unwrap_or(Transport::Stdio.as_str())),
    );
    let host = overrides
        .host
        .as_deref()
        .unwrap_or_else(|| r.raw(vars::HOST).unwrap_or(defaults::HOST))
        .trim()
        .to_owned();
    let port = match overrides.port {
        Some(port) => Some(i64::from(port)),
        None => {
            let value = r.get(vars::PORT);
            r.int(value, defaults::PORT)
        }
    };

    let state_dir = match r.aliased(vars::STATE_DIR, vars::LEGACY_STATE_DIR) {
        Some((_, value)) => resolve_path(&cwd, Path::new(value)),
        None => resolve_path(&cwd, Path::new(defaults::STATE_DIR)),
    };
    let (database, sqlite_url_path) = match r.raw(vars::DATABASE_URL).map(Database::parse) {
        None => (Database::Sqlite, None),
        Some(Ok(parsed)) => parsed,
        Some(Err(problem)) => {
            r.problems.push(problem);
            (Database::Sqlite, None)
        }
    };
    let db_path = match (r.raw(vars::DB_PATH), sqlite_url_path) {
        (Some(_), Some(_)) => {
            r.problems.push(format!(
                "{} and a sqlite:// {} with a path are both set: set one of them",
                vars::DB_PATH,
                vars::DATABASE_URL
            ));
            state_dir.join(defaults::DB_FILE_NAME)
        }
        (Some(value), None) | (None, Some(value)) => resolve_path(&cwd, Path::new(value)),
        (None, None) => state_dir.join(defaults::DB_FILE_NAME),
    };
    let artifact_dir = match r.raw(vars::ARTIFACT_DIR) {
        Some(value) => resolve_path(&cwd, Path::new(value)),
        None => state_dir.join(defaults::ARTIFACT_DIR_NAME),
    };

    let log_level_raw = r
        .aliased(vars::LOG_LEVEL, vars::LEGACY_LOG_LEVEL)
        .map_or(LogLevel::Info.as_str(), |(_, value)| value)
        .to_uppercase();
    let model_var = r.aliased(vars::MODEL, vars::LEGACY_MODEL);
    let model = model_var
        .map_or(defaults::MODEL, |(_, value)| value)
        .to_owned();
    // The model is the value of the Claude Code CLI's `--model` argument, and a project's
    // `.env` may set it: it must not be able to pass for an option of its own.
    if let Some((name, value)) = model_var.filter(|(_, value)| value.starts_with('-')) {
        r.problems.push(format!(
            "{name}={} is not a valid model name: it must not start with '-'",
            pyfmt::repr_str(value)
        ));
    }
    let value = r.aliased(vars::LOCK_TTL, vars::LEGACY_LOCK_TTL);
    let lock_ttl_secs = r.int(value, defaults::LOCK_TTL_SECS);
    let allowed_dirs = match r.aliased(vars::ALLOWED_DIRS, vars::LEGACY_ALLOWED_DIRS) {
        Some((_, value)) if !value.is_empty() => parse_list(value)
            .iter()
            .map(|dir| resolve_path(&cwd, Path::new(dir)))
            .collect(),
        _ => vec![cwd.clone()],
    };
    let value = r.aliased(vars::MAX_ARTIFACT_BYTES, vars::LEGACY_MAX_ARTIFACT_BYTES);
    let max_artifact_bytes = r.int(value, defaults::MAX_ARTIFACT_BYTES);
    let operator_profile = r
        .raw(vars::OPERATOR_PROFILE)
        .map(normalise_choice)
        .filter(|name| !name.is_empty());

    // --- Backends -------------------------------------------------------------------------
    let backend_raw = normalise_choice(
        r.raw(vars::EXECUTION_BACKEND)
            .unwrap_or(BackendKind::Api.as_str()),
    );
    let anthropic_api_key = Secret::new(r.raw(vars::ANTHROPIC_API_KEY).unwrap_or_default());
    let anthropic_base_url = r
        .raw(vars::ANTHROPIC_BASE_URL)
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .unwrap_or(defaults::ANTHROPIC_BASE_URL)
        .to_owned();
    let value = r.get(vars::API_MAX_RETRIES);
    let api_max_retries = r.number(value, defaults::API_MAX_RETRIES, "non-negative integer");
    let value = r.get(vars::API_TIMEOUT);
    let api_timeout_secs = r.number(value, defaults::API_TIMEOUT_SECS, "non-negative integer");
    let value = r.get(vars::MAX_EVIDENCE_BYTES);
    let max_evidence_bytes = r.number(value, defaults::MAX_EVIDENCE_BYTES, "non-negative integer");
    let builtin_tools = r.bool(vars::BUILTIN_TOOLS, true);
    let claude_code_cli_path = r
        .raw(vars::CLAUDE_CODE_CLI_PATH)
        .map(str::trim)
        .filter(|path| !path.is_empty())
        .map(PathBuf::from);
    let value = r.get(vars::CLAUDE_CODE_TIMEOUT);
    let claude_code_timeout_secs = r.int(value, defaults::CLAUDE_CODE_TIMEOUT_SECS);
    let limited_tool_forwarding = r.bool(vars::LIMITED_TOOL_FORWARDING, false);
    let claude_code_mode_raw = normalise_choice(
        r.raw(vars::CLAUDE_CODE_MODE)
            .unwrap_or(ClaudeCodeMode::Native.as_str()),
    );
    let claude_code_mode = ClaudeCodeMode::parse(&claude_code_mode_raw);
    let claude_code_env_passthrough = r.list(vars::CLAUDE_CODE_ENV_PASSTHROUGH);
    let setting_sources_raw = r.raw(vars::CLAUDE_CODE_SETTING_SOURCES).map(parse_list);
    let claude_code_setting_sources = setting_sources_raw.as_ref().map(|names| {
        names
            .iter()
            .filter_map(|name| SettingSource::parse(&normalise_choice(name)))
            .collect::<Vec<_>>()
    });

    // --- Continuation and mediation (preset-aware) ----------------------------------------
    let preset = presets::defaults_for(operator_profile.as_deref());
    let max_continuation_turns =
        r.int_var(vars::MAX_CONTINUATION_TURNS, preset.max_continuation_turns);
    let max_continuation_warnings = r.int_var(
        vars::MAX_CONTINUATION_WARNINGS,
        preset.max_continuation_warnings,
    );
    let max_continuation_forwarding_events = r.int_var(
        vars::MAX_CONTINUATION_FORWARDING_EVENTS,
        preset.max_continuation_forwarding_events,
    );
    let max_actions_per_turn = r.int_var(
        vars::MAX_MEDIATED_ACTIONS_PER_TURN,
        preset.max_mediated_actions_per_turn,
    );
    let max_workflow_steps = r.int_var(
        vars::MAX_MEDIATED_WORKFLOW_STEPS,
        preset.max_mediated_workflow_steps,
    );
    let max_session_approvals = r.int_var(
        vars::MAX_SESSION_MEDIATED_APPROVALS,
        preset.max_session_mediated_approvals,
    );
    let include_verification_context = r.bool(
        vars::INCLUDE_VERIFICATION_CONTEXT,
        preset.include_verification_context,
    );
    let include_tool_downgrade_context = r.bool(
        vars::INCLUDE_TOOL_DOWNGRADE_CONTEXT,
        preset.include_tool_downgrade_context,
    );
    let mediation_enabled = r.bool(
        vars::ENABLE_EXECUTION_MEDIATION,
        preset.enable_execution_mediation,
    );
    let include_results_in_continuation = r.bool(
        vars::INCLUDE_MEDIATED_RESULTS_IN_CONTINUATION,
        preset.include_mediated_results_in_continuation,
    );
    let include_rejected_in_continuation = r.bool(
        vars::INCLUDE_REJECTED_MEDIATION_IN_CONTINUATION,
        preset.include_rejected_mediation_in_continuation,
    );
    let policy_profile = r
        .raw(vars::MEDIATION_POLICY_PROFILE)
        .map_or(preset.mediation_policy_profile, str::trim)
        .to_owned();
    let allowed_action_types = r.list(vars::ALLOWED_MEDIATED_ACTION_TYPES);
    let allowed_tools = r.list(vars::ALLOWED_MEDIATED_TOOLS);
    let denied_tools = r.list(vars::DENIED_MEDIATED_TOOLS);

    // --- Federation and HTTP --------------------------------------------------------------
    let federation_enabled = r.bool(vars::FEDERATION_ENABLED, false);
    let federation_config = r
        .raw(vars::FEDERATION_CONFIG)
        .filter(|path| !path.is_empty())
        .map(|path| resolve_path(&cwd, Path::new(path)));
    let allowed_origins = r.list(vars::ALLOWED_ORIGINS);
    let http_bearer_token = r
        .raw(vars::HTTP_BEARER_TOKEN)
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .map(Secret::new);
    let value = r.get(vars::HTTP_HEADER_TIMEOUT);
    let http_header_timeout_secs = r.number(
        value,
        defaults::HTTP_HEADER_TIMEOUT_SECS,
        "positive integer",
    );
    let value = r.get(vars::HTTP_MAX_CONNECTIONS);
    let http_max_connections = r.number(value, defaults::HTTP_MAX_CONNECTIONS, "positive integer");
    let value = r.get(vars::DATABASE_MAX_CONNECTIONS);
    let database_max_connections = r.number(
        value,
        defaults::DATABASE_MAX_CONNECTIONS,
        "positive integer",
    );
    let database_listen = r.bool(vars::DATABASE_LISTEN, defaults::DATABASE_LISTEN);
    let spend_raw = spend::Raw {
        max_budget_usd: r.raw(vars::MAX_BUDGET_USD).filter(|v| !v.trim().is_empty()),
        max_total_tokens: r
            .raw(vars::MAX_TOTAL_TOKENS)
            .filter(|v| !v.trim().is_empty()),
        allowed_models: r.raw(vars::ALLOWED_MODELS).filter(|v| !v.trim().is_empty()),
        model_prices: r.raw(vars::MODEL_PRICES).filter(|v| !v.trim().is_empty()),
    };
    let spend = spend::parse(&spend_raw, &model, &mut r.problems);
    let metrics_addr_raw = r
        .raw(vars::METRICS_ADDR)
        .map(str::trim)
        .filter(|addr| !addr.is_empty())
        .map(str::to_owned);

    // --- Validation (`docs/reference/policy.md#91-configuration-errors`) -----------------------
    let mut telemetry_problems = Vec::new();
    let telemetry = telemetry::read(&r, &mut telemetry_problems);
    let mut problems = r.problems;
    problems.extend(telemetry_problems);
    let mode = RuntimeMode::parse(&mode_raw);
    if mode.is_none() {
        problems.push(format!(
            "{}={} is not valid. Choose from: {}",
            vars::MODE,
            pyfmt::repr_str(&mode_raw),
            RuntimeMode::choices()
        ));
    }
    let transport = Transport::parse(&transport_raw);
    if transport.is_none() {
        problems.push(format!(
            "{}={} is not valid. Choose from: {}",
            vars::TRANSPORT,
            pyfmt::repr_str(&transport_raw),
            Transport::choices()
        ));
    }
    if transport == Some(Transport::StreamableHttp) {
        if host.is_empty() {
            problems.push(format!(
                "{} must not be empty for streamable-http transport",
                vars::HOST
            ));
        }
        if let Some(port) = port.filter(|port| !(1..=65535).contains(port)) {
            problems.push(format!("{}={port} is out of range (1–65535)", vars::PORT));
        }
    }
    let log_level = LogLevel::parse(&log_level_raw);
    if log_level.is_none() {
        problems.push(format!(
            "{}={} is not a valid log level",
            vars::LOG_LEVEL,
            pyfmt::repr_str(&log_level_raw)
        ));
    }
    let backend = BackendKind::parse(&backend_raw);
    if backend.is_none() {
        problems.push(format!(
            "{}={} is not valid. Choose from: {}",
            vars::EXECUTION_BACKEND,
            pyfmt::repr_str(&backend_raw),
            BackendKind::choices()
        ));
    }
    if claude_code_mode.is_none() {
        problems.push(format!(
            "{}={} is not valid. Choose from: {}",
            vars::CLAUDE_CODE_MODE,
            pyfmt::repr_str(&claude_code_mode_raw),
            ClaudeCodeMode::choices()
        ));
    }
    for name in setting_sources_raw.iter().flatten() {
        if SettingSource::parse(&normalise_choice(name)).is_none() {
            problems.push(format!(
                "{}: {} is not valid. Choose from: {}",
                vars::CLAUDE_CODE_SETTING_SOURCES,
                pyfmt::repr_str(name),
                SettingSource::choices()
            ));
        }
    }
    for name in &claude_code_env_passthrough {
        if name.contains(['=', '\0']) {
            problems.push(format!(
                "{}: {} is not a variable name",
                vars::CLAUDE_CODE_ENV_PASSTHROUGH,
                pyfmt::repr_str(name)
            ));
        } else if name.starts_with(SERVER_VAR_PREFIX) {
            problems.push(format!(
                "{}: {} is a variable of this server; the CLI never inherits those",
                vars::CLAUDE_CODE_ENV_PASSTHROUGH,
                pyfmt::repr_str(name)
            ));
        }
    }
    if mode == Some(RuntimeMode::ApntalkVerification) {
        problems.extend(crate::restricted::configuration_problems(
            (backend, &backend_raw),
            (transport, &transport_raw),
        ));
    }
    if transport == Some(Transport::StreamableHttp)
        && !host.is_empty()
        && !is_loopback_host(&host)
        && http_bearer_token.is_none()
    {
        problems.push(format!(
            "{}={} is not a loopback address: binding streamable-http to it requires {} to be set",
            vars::HOST,
            pyfmt::repr_str(&host),
            vars::HTTP_BEARER_TOKEN
        ));
    }

    if http_header_timeout_secs == Some(0) {
        problems.push(format!(
            "{}=0 is not valid: the timeout must be at least 1 second",
            vars::HTTP_HEADER_TIMEOUT
        ));
    }
    if let Some(max) = database_max_connections
        .filter(|max| !(1..=defaults::DATABASE_MAX_CONNECTIONS_LIMIT).contains(max))
    {
        problems.push(format!(
            "{}={max} is out of range (1–{})",
            vars::DATABASE_MAX_CONNECTIONS,
            defaults::DATABASE_MAX_CONNECTIONS_LIMIT
        ));
    }
    if let Some(max) =
        http_max_connections.filter(|max| !(1..=defaults::HTTP_MAX_CONNECTIONS_LIMIT).contains(max))
    {
        problems.push(format!(
            "{}={max} is out of range (1–{})",
            vars::HTTP_MAX_CONNECTIONS,
            defaults::HTTP_MAX_CONNECTIONS_LIMIT
        ));
    }

    if backend == Some(BackendKind::ClaudeCode) && spend::token_caps_set(&spend) {
        problems.push(format!(
            "{} cannot be enforced by the claude_code backend (it holds only a USD budget): \
             unset it or use {}",
            vars::MAX_TOTAL_TOKENS,
            vars::MAX_BUDGET_USD
        ));
    }

    let metrics_addr = match metrics_addr_raw
        .as_deref()
        .map(|raw| (raw, raw.parse::<SocketAddr>()))
    {
        None => None,
        Some((_, Ok(addr))) => {
            if !addr.ip().is_loopback() && http_bearer_token.is_none() {
                problems.push(format!(
                    "{}={} is not a loopback address: serving metrics on it requires {} to be set",
                    vars::METRICS_ADDR,
                    pyfmt::repr_str(&addr.to_string()),
                    vars::HTTP_BEARER_TOKEN
                ));
            }
            Some(addr)
        }
        Some((raw, Err(_))) => {
            problems.push(format!(
                "{}={} is not a valid address: give IP:PORT, e.g. 127.0.0.1:9464",
                vars::METRICS_ADDR,
                pyfmt::repr_str(raw)
            ));
            None
        }
    };

    match (
        mode,
        transport,
        port,
        log_level,
        lock_ttl_secs,
        max_artifact_bytes,
        backend,
        api_max_retries,
        (api_timeout_secs, max_evidence_bytes),
        (
            http_header_timeout_secs,
            http_max_connections,
            database_max_connections,
        ),
        claude_code_timeout_secs,
        (
            max_continuation_turns,
            max_continuation_warnings,
            max_continuation_forwarding_events,
        ),
        (
            max_actions_per_turn,
            max_workflow_steps,
            max_session_approvals,
        ),
    ) {
        (
            Some(mode),
            Some(transport),
            Some(port),
            Some(log_level),
            Some(lock_ttl_secs),
            Some(max_artifact_bytes),
            Some(backend),
            Some(api_max_retries),
            (Some(api_timeout_secs), Some(max_evidence_bytes)),
            (
                Some(http_header_timeout_secs),
                Some(http_max_connections),
                Some(database_max_connections),
            ),
            Some(claude_code_timeout_secs),
            (
                Some(max_continuation_turns),
                Some(max_continuation_warnings),
                Some(max_continuation_forwarding_events),
            ),
            (Some(max_actions_per_turn), Some(max_workflow_steps), Some(max_session_approvals)),
        ) if problems.is_empty() => Ok(Config {
            mode,
            transport,
            host,
            port,
            cwd,
            state_dir,
            db_path,
            artifact_dir,
            database,
            log_level,
            model,
            lock_ttl_secs,
            allowed_dirs,
            max_artifact_bytes,
            operator_profile,
            backend,
            anthropic_api_key,
            anthropic_base_url,
            api_max_retries,
            api_timeout_secs,
            max_evidence_bytes,
            builtin_tools,
            claude_code_cli_path,
            claude_code_timeout_secs,
            limited_tool_forwarding,
            claude_code_mode: claude_code_mode.unwrap_or(ClaudeCodeMode::Native),
            claude_code_env_passthrough,
            claude_code_setting_sources,
            continuation: ContinuationSettings {
                max_continuation_turns,
                max_continuation_warnings,
                max_continuation_forwarding_events,
                include_verification_context,
                include_tool_downgrade_context,
            },
            mediation: MediationSettings {
                enabled: mediation_enabled,
                max_actions_per_turn,
                allowed_action_types,
                include_results_in_continuation,
                max_workflow_steps,
                allowed_tools,
                denied_tools,
                max_session_approvals,
                include_rejected_in_continuation,
                policy_profile,
            },
            federation_enabled,
            federation_config,
            allowed_origins,
            http_bearer_token,
            http_header_timeout_secs,
            http_max_connections,
            database_max_connections,
            database_listen,
            metrics_addr,
            spend,
            telemetry,
            env_file: None,
        }),
        _ => Err(ConfigErrors(problems)),
    }
}
