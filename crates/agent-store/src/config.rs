//! Store configuration ([`StoreConfig`]) and the failures of opening a store
//! ([`StoreOpenError`]), each naming the path involved.

use std::path::PathBuf;

/// Where the store keeps its data and how large an artifact may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The SQLite database file; it and its parent directories are created when missing.
    pub db_path: PathBuf,
    /// The artifact root (`<artifact_dir>/<session_id>/<artifact_id>-<safe_name>`); created
    /// recursively on open.
    pub artifact_dir: PathBuf,
    /// Bodies larger than this are refused (`Artifact exceeds max size: <size> > <max>`).
    pub max_artifact_bytes: u64,
}

/// Why [`SqliteStore::open`](crate::SqliteStore::open) or
/// [`PostgresStore::open`](crate::PostgresStore::open) failed. A PostgreSQL URL is always shown
/// with its password redacted.
#[derive(Debug, thiserror::Error)]
pub enum StoreOpenError {
    /// A state, database or artifact directory could not be created or resolved.
    #[error("cannot create directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The database file could not be opened or created.
    #[error("cannot open SQLite database {}: {source}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    /// The schema migration failed (e.g. an incompatible existing database).
    #[error("cannot apply the schema to SQLite database {}: {source}", path.display())]
    Migrate {
        path: PathBuf,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// Recording the schema version in `schema_migrations` failed.
    #[error("cannot record the schema version in SQLite database {}: {source}", path.display())]
    Bootstrap {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    /// The PostgreSQL URL does not parse, or the server cannot be reached or refuses us.
    #[error("cannot connect to PostgreSQL at {url}: {source}")]
    PgConnect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    /// The PostgreSQL schema migration failed.
    #[error("cannot apply the schema to PostgreSQL at {url}: {source}")]
    PgMigrate {
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}
