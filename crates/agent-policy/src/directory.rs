//! The directory policy (`docs/reference/policy.md#3-working-directory`,
//! `docs/reference/policy.md#4-attachments-and-evidence-paths`): working-directory
//! resolution against the allowlist (again before every continuation), attachment checks,
//! evidence-path existence, and the reading of evidence and attachments (`crate::evidence`).
//!
//! Every path is resolved with [`resolve_path`](crate::paths::resolve_path): made absolute
//! against the server CWD and canonicalised with symlinks resolved, even when the path (or
//! part of it) does not exist. Containment is component-wise, so neither `..` nor a symlink
//! can make a path outside the allowed directories look inside.

use std::path::{Path, PathBuf};

use agent_core::error::ErrorCode;
use agent_core::evidence::Evidence;
use agent_core::ports::{PolicyViolation, WorkspacePolicy};
use agent_core::pyfmt;

use crate::config::Config;
use crate::paths::{is_within, resolve_path};

/// The working-directory allowlist of one server process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryPolicy {
    cwd: PathBuf,
    allowed: Vec<PathBuf>,
}

impl DirectoryPolicy {
    /// Canonicalises `cwd` (against the process's current directory if relative) and every
    /// allowed directory (relative ones against `cwd`), keeping their order.
    pub fn new<I, P>(cwd: impl AsRef<Path>, allowed_dirs: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<Path>,
    {
        let cwd = resolve_path(cwd.as_ref(), Path::new(""));
        let allowed = allowed_dirs
            .into_iter()
            .map(|dir| resolve_path(&cwd, dir.as_ref()))
            .collect();
        Self { cwd, allowed }
    }

    /// The policy of a resolved configuration: its CWD and `allowed_dirs`.
    pub fn from_config(config: &Config) -> Self {
        Self::new(&config.cwd, &config.allowed_dirs)
    }

    /// The canonical allowed directories, in configuration order.
    pub fn allowed_dirs(&self) -> &[PathBuf] {
        &self.allowed
    }

    /// Whether `path` (already resolved) lies inside one of the allowed directories.
    pub fn is_allowed(&self, path: &Path) -> bool {
        self.allowed.iter().any(|dir| is_within(path, dir))
    }

    pub(crate) fn resolve(&self, path: &str) -> PathBuf {
        resolve_path(&self.cwd, Path::new(path))
    }

    /// The denial of a working directory outside the allowlist.
    fn outside_allowed(&self, resolved: &Path) -> PolicyViolation {
        let allowed = pyfmt::list(self.allowed.iter().map(|dir| dir.to_string_lossy()));
        PolicyViolation::new(
            ErrorCode::PolicyDenied,
            format!(
                "working_directory '{}' is not in the server's allowed_dirs. Allowed: {allowed}",
                resolved.to_string_lossy()
            ),
        )
    }
}

impl WorkspacePolicy for DirectoryPolicy {
    fn cwd(&self) -> &Path {
        &self.cwd
    }

    fn resolve_working_directory(
        &self,
        requested: Option<&str>,
    ) -> Result<PathBuf, PolicyViolation> {
        let resolved = match requested {
            Some(path) if !path.is_empty() => self.resolve(path),
            _ => self.cwd.clone(),
        };
        if self.is_allowed(&resolved) {
            return Ok(resolved);
        }
        Err(self.outside_allowed(&resolved))
    }

    fn reresolve_working_directory(&self, stored: &str) -> Result<PathBuf, PolicyViolation> {
        let resolved = self.resolve(stored);
        if !self.is_allowed(&resolved) {
            return Err(self.outside_allowed(&resolved));
        }
        if !resolved.is_dir() {
            return Err(PolicyViolation::new(
                ErrorCode::PolicyDenied,
                format!(
                    "working_directory '{}' no longer exists or is not a directory",
                    resolved.to_string_lossy()
                ),
            ));
        }
        Ok(resolved)
    }

    fn check_attachment(&self, path: &str) -> Result<PathBuf, PolicyViolation> {
        let resolved = self.resolve(path);
        if !resolved.exists() {
            return Err(PolicyViolation::new(
                ErrorCode::ValidationError,
                format!("Attachment path does not exist: {path}"),
            ));
        }
        // Quirk kept from the original (**[kept]** in
        // `docs/reference/policy.md#4-attachments-and-evidence-paths`): the *parent* must be
        // allowed, so an allowed directory given as an attachment is denied.
        match resolved.parent() {
            Some(parent) if self.is_allowed(parent) => Ok(resolved),
            _ => Err(PolicyViolation::new(
                ErrorCode::PolicyDenied,
                crate::evidence::outside_message(path),
            )),
        }
    }

    fn path_exists(&self, path: &str) -> bool {
        self.cwd.join(path).exists()
    }

    fn read_evidence(
        &self,
        paths: &[String],
        budget: usize,
    ) -> Result<(Vec<Evidence>, Vec<String>), PolicyViolation> {
        crate::evidence::collect(self, paths, budget)
    }
}
