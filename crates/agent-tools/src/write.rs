//! The writing tools: `write_file` and `edit_file` (never offered to read-only profiles).
//!
//! Both write atomically: the new content goes to a temporary file in the target's directory,
//! is flushed to disk, then renamed over the target, so a reader sees the old file or the new
//! one, never a mix. An existing file keeps its permissions; a symlink inside the sandbox is
//! written through (its target is replaced, the link stays).

use std::fs::{self, File, Permissions};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::Deserialize;

use crate::error::ToolError;
use crate::limits::ToolLimits;
use crate::sandbox::{Resolved, Sandbox};
use crate::text::{looks_binary, plural};

#[derive(Debug, Deserialize)]
pub(crate) struct WriteFileInput {
    path: String,
    content: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct EditFileInput {
    path: String,
    old_string: String,
    new_string: String,
    #[serde(default)]
    replace_all: Option<bool>,
}

fn read_only(shown: &str) -> ToolError {
    ToolError::detailed(format!("'{shown}' is read-only"), "File is read-only")
}

/// `write_file`: creates or replaces a file (and its missing parent directories).
pub(crate) fn write_file(
    sandbox: &Sandbox,
    input: WriteFileInput,
    limits: &ToolLimits,
) -> Result<String, ToolError> {
    if input.content.len() > limits.max_write_bytes {
        return Err(ToolError::detailed(
            format!(
                "content is {} bytes, over the write_file limit of {} bytes",
                input.content.len(),
                limits.max_write_bytes
            ),
            "Content exceeds the write_file size limit",
        ));
    }
    let target = sandbox.resolve(&input.path)?;
    let shown = target.shown.as_str();
    let existing = match fs::metadata(&target.real) {
        Ok(meta) if meta.is_dir() => return Err(ToolError::is_directory(shown, "")),
        Ok(meta) if !meta.is_file() => return Err(ToolError::not_regular(shown)),
        Ok(meta) if meta.permissions().readonly() => return Err(read_only(shown)),
        Ok(meta) => Some(meta.permissions()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(ToolError::io("write", shown, &e)),
    };
    create_parents(sandbox, &target)?;
    let verb = if existing.is_some() {
        "Updated"
    } else {
        "Created"
    };
    atomic_write(&target.real, input.content.as_bytes(), existing)
        .map_err(|e| ToolError::io("write", shown, &e))?;
    Ok(format!(
        "{verb} {} ({})",
        sandbox.display(&target.real),
        plural(input.content.len(), "byte", "bytes")
    ))
}

/// Creates the missing parent directories of a write target, all inside the sandbox, then
/// checks that the path still resolves where it did.
fn create_parents(sandbox: &Sandbox, target: &Resolved) -> Result<(), ToolError> {
    let Some(parent) = target.real.parent() else {
        return Err(ToolError::is_directory(&target.shown, ""));
    };
    if parent.is_dir() {
        return Ok(());
    }
    if !sandbox.contains(parent) {
        return Err(ToolError::detailed(
            format!(
                "Access denied: the parent directory of '{}' is outside the sandbox",
                target.shown
            ),
            "Access denied: parent directory is outside the sandbox",
        ));
    }
    fs::create_dir_all(parent)
        .map_err(|e| ToolError::io("create the parent directory of", &target.shown, &e))?;
    let again = sandbox.resolve(&target.shown)?;
    if again.real != target.real {
        return Err(ToolError::plain(
            "Access denied: the path changed while it was being written",
        ));
    }
    Ok(())
}

/// `edit_file`: replaces an exact, unique occurrence of `old_string` (every occurrence with
/// `replace_all`).
pub(crate) fn edit_file(
    sandbox: &Sandbox,
    input: EditFileInput,
    limits: &ToolLimits,
) -> Result<String, ToolError> {
    if input.old_string.is_empty() {
        return Err(ToolError::plain(
            "old_string must not be empty; use write_file to create or overwrite a file",
        ));
    }
    if input.old_string == input.new_string {
        return Err(ToolError::plain(
            "old_string and new_string are identical; nothing to change",
        ));
    }
    let target = sandbox.resolve(&input.path)?;
    let shown = target.shown.as_str();
    let meta = fs::metadata(&target.real).map_err(|e| ToolError::io("edit", shown, &e))?;
    if meta.is_dir() {
        return Err(ToolError::is_directory(shown, ""));
    }
    if !meta.is_file() {
        return Err(ToolError::not_regular(shown));
    }
    if meta.permissions().readonly() {
        return Err(read_only(shown));
    }
    let too_large = |size: u64| {
        ToolError::detailed(
            format!(
                "'{shown}' is {size} bytes, over the edit_file limit of {} bytes",
                limits.max_write_bytes
            ),
            "File exceeds the edit_file size limit",
        )
    };
    if meta.len() > limits.max_write_bytes as u64 {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::new();
    File::open(&target.real)
        .and_then(|f| {
            f.take(limits.max_write_bytes as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(|e| ToolError::io("edit", shown, &e))?;
    if bytes.len() > limits.max_write_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    if looks_binary(&bytes) {
        return Err(ToolError::detailed(
            format!("'{shown}' appears to be a binary file; edit_file only edits text files"),
            "File appears to be binary",
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        ToolError::detailed(
            format!("'{shown}' is not valid UTF-8 text; edit_file only edits UTF-8 text files"),
            "File is not valid UTF-8 text",
        )
    })?;
    let count = text.matches(input.old_string.as_str()).count();
    let replace_all = input.replace_all.unwrap_or(false);
    if count == 0 {
        return Err(ToolError::detailed(
            format!(
                "old_string was not found in '{shown}'; it must match the file exactly, including whitespace and indentation"
            ),
            "old_string was not found in the file",
        ));
    }
    if count > 1 && !replace_all {
        return Err(ToolError::detailed(
            format!(
                "old_string occurs {count} times in '{shown}'; include more surrounding context to make it unique, or set replace_all to true"
            ),
            "old_string is not unique in the file",
        ));
    }
    let edited = if replace_all {
        text.replace(&input.old_string, &input.new_string)
    } else {
        text.replacen(&input.old_string, &input.new_string, 1)
    };
    if edited.len() > limits.max_write_bytes {
        return Err(ToolError::detailed(
            format!(
                "the edited file would be {} bytes, over the edit_file limit of {} bytes",
                edited.len(),
                limits.max_write_bytes
            ),
            "Edited file would exceed the edit_file size limit",
        ));
    }
    atomic_write(&target.real, edited.as_bytes(), Some(meta.permissions()))
        .map_err(|e| ToolError::io("edit", shown, &e))?;
    Ok(format!(
        "Edited {}: replaced {}",
        sandbox.display(&target.real),
        plural(count, "occurrence", "occurrences")
    ))
}

/// Writes `data` to a temporary file beside `target`, flushes it and renames it over
/// `target`. A new file gets the usual `0666 & !umask` mode; an existing one keeps `keep`.
fn atomic_write(target: &Path, data: &[u8], keep: Option<Permissions>) -> std::io::Result<()> {
    let dir = target
        .parent()
        .ok_or_else(|| std::io::Error::other("the path has no parent directory"))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".agent-tools-").suffix(".tmp");
    let mut temp = match &keep {
        Some(_) => builder.tempfile_in(dir)?,
        None => builder
            .permissions(Permissions::from_mode(0o666))
            .tempfile_in(dir)?,
    };
    if let Some(perms) = keep {
        temp.as_file().set_permissions(perms)?;
    }
    temp.write_all(data)?;
    temp.as_file().sync_all()?;
    temp.persist(target).map_err(|e| e.error)?;
    Ok(())
}
