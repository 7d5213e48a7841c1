//! The writing tools: `write_file` and `edit_file` (never offered to read-only profiles).
//!
//! Both write atomically: the new content goes to a temporary file in the target's directory,
//! is flushed to disk, then renamed over the target, so a reader sees the old file or the new
//! one, never a mix. An existing file keeps its permissions; a symlink inside the sandbox is
//! written through (its target is replaced, the link stays).
//!
//! Parents are created, the file is read and the temporary file is written and renamed
//! through directory handles of the sandbox (`sandbox.rs`), so a directory swapped for a link
//! after the check cannot make a write land outside.

use std::ffi::OsStr;
use std::fs::Permissions;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};

use serde::Deserialize;

use crate::error::ToolError;
use crate::limits::ToolLimits;
use crate::sandbox::{Resolved, Sandbox, open_dir_nofollow, read_options, through_link};
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
    let (parent, name) = parent_handle(sandbox, &target, true)?;
    let existing = match parent.symlink_metadata(name) {
        Ok(meta) if meta.is_symlink() => return Err(changed()),
        Ok(meta) if meta.is_dir() => return Err(ToolError::is_directory(shown, "")),
        Ok(meta) if !meta.is_file() => return Err(ToolError::not_regular(shown)),
        Ok(meta) if meta.permissions().readonly() => return Err(read_only(shown)),
        Ok(meta) => Some(Permissions::from_mode(cap_std::fs::PermissionsExt::mode(
            &meta.permissions(),
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(ToolError::opened("write", shown, &e)),
    };
    let verb = if existing.is_some() {
        "Updated"
    } else {
        "Created"
    };
    atomic_write(&parent, name, input.content.as_bytes(), existing)
        .map_err(|e| ToolError::opened("write", shown, &e))?;
    Ok(format!(
        "{verb} {} ({})",
        sandbox.display(&target.real),
        plural(input.content.len(), "byte", "bytes")
    ))
}

fn changed() -> ToolError {
    ToolError::plain("Access denied: the path changed while it was being written")
}

/// A handle on the directory that holds `target` (its missing directories created first,
/// through the sandbox's handle, when `create` is set) and the target's name in it.
fn parent_handle<'a>(
    sandbox: &Sandbox,
    target: &'a Resolved,
    create: bool,
) -> Result<(Dir, &'a OsStr), ToolError> {
    let (root, rel) = sandbox.anchor(target)?;
    let Some(name) = target
        .real
        .file_name()
        .filter(|_| !rel.as_os_str().is_empty())
    else {
        return Err(ToolError::is_directory(&target.shown, ""));
    };
    let parent = rel.parent().unwrap_or(Path::new(""));
    if parent.as_os_str().is_empty() {
        return Ok((root, name));
    }
    if create {
        root.create_dir_all(parent).map_err(|e| {
            if through_link(&root, parent) {
                ToolError::escaped(&target.shown)
            } else {
                ToolError::opened("create the parent directory of", &target.shown, &e)
            }
        })?;
    }
    let dir = open_dir_nofollow(&root, parent).map_err(|e| {
        if through_link(&root, parent) {
            ToolError::escaped(&target.shown)
        } else {
            ToolError::opened("write", &target.shown, &e)
        }
    })?;
    Ok((dir, name))
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
    let (parent, name) = parent_handle(sandbox, &target, false)?;
    let file = parent
        .open_with(name, &read_options())
        .map_err(|e| ToolError::opened("edit", shown, &e))?
        .into_std();
    let meta = file
        .metadata()
        .map_err(|e| ToolError::io("edit", shown, &e))?;
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
    file.take(limits.max_write_bytes as u64 + 1)
        .read_to_end(&mut bytes)
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
    atomic_write(&parent, name, edited.as_bytes(), Some(meta.permissions()))
        .map_err(|e| ToolError::opened("edit", shown, &e))?;
    Ok(format!(
        "Edited {}: replaced {}",
        sandbox.display(&target.real),
        plural(count, "occurrence", "occurrences")
    ))
}

/// Writes `data` to a new temporary file (`.agent-tools-*.tmp`, created exclusively) in
/// `parent`, flushes it and renames it over `name` there. A new file gets the usual
/// `0666 & !umask` mode; an existing one keeps `keep`. The temporary file is removed on failure.
fn atomic_write(
    parent: &Dir,
    name: &OsStr,
    data: &[u8],
    keep: Option<Permissions>,
) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    options.mode(0o666);
    for _ in 0..16 {
        let temp = format!(".agent-tools-{:016x}.tmp", fastrand::u64(..));
        let file = match parent.open_with(&temp, &options) {
            Ok(file) => file.into_std(),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        let written = (|| {
            let mut file = file;
            if let Some(perms) = &keep {
                file.set_permissions(perms.clone())?;
            }
            file.write_all(data)?;
            file.sync_all()?;
            parent.rename(&temp, parent, name)
        })();
        if written.is_err() {
            let _ = parent.remove_file(&temp);
        }
        return written;
    }
    Err(std::io::Error::other(
        "cannot create a temporary file in the target's directory",
    ))
}
