//! # agent-policy
//!
//! Configuration and directory policy of claude-agent-mcp:
//!
//! * [`config`] loads the configuration (an env file — by default the project settings of a `.env`
//!   in the CWD —, the process environment, CLI overrides, operator presets), resolves it into a
//!   typed [`Config`] and validates it, collecting every problem into [`ConfigErrors`]
//!   (`docs/reference/policy.md#91-configuration-errors`).
//! * [`directory`] implements [`agent_core::WorkspacePolicy`] with [`DirectoryPolicy`]: the
//!   working-directory allowlist and attachment checks
//!   (`docs/reference/policy.md#3-working-directory`), and the reading of evidence and attachments,
//!   checked again at the moment each is opened.
//! * [`paths`] resolves paths (absolute, canonical, symlinks resolved, existing or not).
//!
//! ```no_run
//! use agent_policy::{CliOverrides, DirectoryPolicy};
//!
//! let cwd = std::env::current_dir().unwrap_or_default();
//! match agent_policy::config::load(&cwd, &CliOverrides::default()) {
//!     Ok(config) => {
//!         let _policy = DirectoryPolicy::from_config(&config);
//!     }
//!     Err(errors) => {
//!         eprintln!("{errors}");
//!         std::process::exit(1);
//!     }
//! }
//! ```

pub mod config;
pub mod directory;
mod evidence;
pub mod paths;
pub mod restricted;

pub use config::{
    BackendKind, ClaudeCodeMode, CliOverrides, Config, ConfigErrors, ContinuationSettings, EnvFile,
    EnvFileUse, LogLevel, MediationSettings, Reason, RuntimeMode, Secret, Transport, Trust,
};
pub use directory::DirectoryPolicy;
pub use paths::resolve_path;
