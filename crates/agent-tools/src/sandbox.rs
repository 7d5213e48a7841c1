//! The sandbox: where a tool may read and write.
//!
//! A path the model gives is made absolute against the session's working directory and
//! resolved with [`agent_policy::paths::resolve_path`]: every existing symlink on the way is
//! replaced by its target and `..` is applied to the path resolved so far, so the result names
//! the place the operating system would reach (for a path that does not exist yet, its
//! existing prefix is resolved and the rest appended). The resolved path must then lie,
//! component-wise, inside **both** the working directory and one of the allowed directories.
//! Nothing is opened before that check.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent_policy::paths::{is_within, resolve_path};

use crate::error::ToolError;

/// The sandbox of one tool call.
#[derive(Debug, Clone)]
pub(crate) struct Sandbox {
    /// The session's working directory, resolved.
    root: PathBuf,
    /// The server's allowed directories, resolved.
    allowed: Arc<[PathBuf]>,
}

/// A path the model named, resolved and checked.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// Where it really is (symlinks resolved).
    pub real: PathBuf,
    /// How the model wrote it, for error messages.
    pub shown: String,
}

impl Sandbox {
    pub(crate) fn new(working_directory: &Path, allowed: Arc<[PathBuf]>) -> Self {
        Self {
            root: resolve_path(working_directory, Path::new("")),
            allowed,
        }
    }

    /// Whether an already resolved path lies inside the working directory and an allowed
    /// directory.
    pub(crate) fn contains(&self, real: &Path) -> bool {
        is_within(real, &self.root) && self.allowed.iter().any(|dir| is_within(real, dir))
    }

    /// Resolves `input` (relative paths against the working directory) and checks it.
    pub(crate) fn resolve(&self, input: &str) -> Result<Resolved, ToolError> {
        if input.contains('\0') {
            return Err(ToolError::plain("Invalid path: it contains a NUL byte"));
        }
        let real = resolve_path(&self.root, Path::new(input));
        if !is_within(&real, &self.root) {
            return Err(ToolError::detailed(
                format!("Access denied: '{input}' is outside the session's working directory"),
                "Access denied: path is outside the session's working directory",
            ));
        }
        if !self.allowed.iter().any(|dir| is_within(&real, dir)) {
            return Err(ToolError::detailed(
                format!("Access denied: '{input}' is outside the allowed directories"),
                "Access denied: path is outside the allowed directories",
            ));
        }
        Ok(Resolved {
            real,
            shown: input.to_owned(),
        })
    }

    /// Resolves `name` inside the already checked directory `dir` (a walk meeting a symlink);
    /// `None` when it leads out of the sandbox.
    pub(crate) fn resolve_entry(&self, dir: &Path, name: &std::ffi::OsStr) -> Option<PathBuf> {
        let real = resolve_path(dir, Path::new(name));
        self.contains(&real).then_some(real)
    }

    /// `real` relative to the working directory with `/` separators (`.` for the directory
    /// itself); paths shown to the model can be passed back to any tool.
    pub(crate) fn display(&self, real: &Path) -> String {
        match real.strip_prefix(&self.root) {
            Ok(rel) if rel.as_os_str().is_empty() => ".".to_owned(),
            Ok(rel) => join_components(rel),
            Err(_) => real.to_string_lossy().into_owned(),
        }
    }
}

/// A relative path with `/` separators.
pub(crate) fn join_components(rel: &Path) -> String {
    let parts: Vec<_> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect();
    parts.join("/")
}
