//! [`ToolError`]: a failed tool call, with the text the model sees and a value-free text for
//! the audit log.
//!
//! The model may be told which path it asked for (`Access denied: '../x' is outside the
//! session's working directory`); the `workspace_tool_result` event records only the kind of
//! failure (`Access denied: path is outside the session's working directory`), so that no
//! argument value reaches the event log.

use std::fmt;

/// A failed tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolError {
    /// What the model sees (the tool loop prefixes it with `Error: `).
    pub message: String,
    /// What the `workspace_tool_result` event records: never an argument value.
    pub audit: String,
}

impl ToolError {
    /// An error whose text holds no argument value: the model and the log see the same text.
    pub fn plain(message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            audit: message.clone(),
            message,
        }
    }

    /// An error that quotes an argument value for the model, with a value-free audit text.
    pub fn detailed(message: impl Into<String>, audit: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            audit: audit.into(),
        }
    }

    /// A failed file-system operation on a path the model named.
    pub(crate) fn io(verb: &str, shown: &str, error: &std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::NotFound {
            return Self::not_found(shown);
        }
        Self::detailed(
            format!("Cannot {verb} '{shown}': {error}"),
            format!("Cannot {verb} path: {error}"),
        )
    }

    /// A failed operation through a directory handle: a path that led out of the sandbox (a
    /// symlink swapped in after the check, or a final component that became a link) is an
    /// access denial, anything else as [`io`](Self::io).
    pub(crate) fn opened(verb: &str, shown: &str, error: &std::io::Error) -> Self {
        // cap-std reports an escape as PermissionDenied without an OS error; opening a final
        // component with O_NOFOLLOW that is a symlink fails with ELOOP.
        let escape = (error.kind() == std::io::ErrorKind::PermissionDenied
            && error.raw_os_error().is_none())
            || error.raw_os_error() == Some(libc::ELOOP)
            || error.raw_os_error() == Some(libc::EXDEV);
        if escape {
            return Self::escaped(shown);
        }
        if error.raw_os_error() == Some(libc::ENOTDIR) {
            return Self::not_directory(shown);
        }
        Self::io(verb, shown, error)
    }

    /// A path that changed into a symlink, or leads out of the sandbox through one, at the
    /// moment it was opened.
    pub(crate) fn escaped(shown: &str) -> Self {
        Self::detailed(
            format!(
                "Access denied: '{shown}' changed or leads outside the sandbox through a symbolic link"
            ),
            "Access denied: path changed or leads outside the sandbox through a symbolic link",
        )
    }

    pub(crate) fn not_found(shown: &str) -> Self {
        Self::detailed(
            format!("No such file or directory: '{shown}'"),
            "No such file or directory",
        )
    }

    pub(crate) fn is_directory(shown: &str, hint: &str) -> Self {
        Self::detailed(
            format!("'{shown}' is a directory{hint}"),
            "Path is a directory",
        )
    }

    pub(crate) fn not_directory(shown: &str) -> Self {
        Self::detailed(
            format!("'{shown}' is not a directory"),
            "Path is not a directory",
        )
    }

    pub(crate) fn not_regular(shown: &str) -> Self {
        Self::detailed(
            format!("'{shown}' is not a regular file"),
            "Path is not a regular file",
        )
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ToolError {}
