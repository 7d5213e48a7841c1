//! Reading evidence and attachments (`docs/verification.md`, `docs/security.md`): the only
//! place where a client-named file is opened for the model.
//!
//! Every path is resolved and checked against the allowed directories at the moment it is
//! opened, whatever checks ran before (a message quirk or a race cannot decide what is read):
//!
//! * the path is resolved (symlinks followed) and must lie inside an allowed directory;
//! * it is opened with `O_NOFOLLOW` (a final component swapped for a symlink after the
//!   resolution fails to open) and `O_NONBLOCK` (opening a FIFO never waits for a writer);
//! * the opened file's real path, as the kernel reports it, is checked again, so a directory
//!   component swapped for a symlink in between cannot lead outside;
//! * only regular files are read and only directories are listed (through the opened
//!   descriptor): a FIFO, socket or device is "not readable" and never blocks;
//! * text read and directory entries listed are both charged to one byte budget.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use agent_core::error::ErrorCode;
use agent_core::evidence::{Evidence, EvidenceBody};
use agent_core::ports::PolicyViolation;

use crate::directory::DirectoryPolicy;

/// At most this many entries of a directory are listed.
const MAX_LISTED_ENTRIES: usize = 200;

/// At most this many entries of a directory are looked at (to sort and pick the first
/// [`MAX_LISTED_ENTRIES`]): a huge directory costs bounded time.
const MAX_SCANNED_ENTRIES: usize = 10_000;

/// What one listed entry costs the budget besides its name: the `- ` and the newline it is
/// rendered with (`agent_core::evidence::render`).
const ENTRY_OVERHEAD_BYTES: usize = 3;

/// Bytes looked at to tell a binary file (a NUL byte) from text.
const BINARY_SNIFF_BYTES: usize = 8192;

/// The message of a path outside the allowed directories: the attachment check's.
pub(crate) fn outside_message(given: &str) -> String {
    format!("Attachment '{given}' is outside allowed directories")
}

/// Reads `paths` (relative ones against the policy's CWD) within `budget` bytes in total.
/// Returns the evidence and a warning per truncated or unreadable path, or the policy error
/// of the first path that resolves outside the allowed directories (nothing is returned then).
/// Blocking: callers run it off the async threads.
pub(crate) fn collect(
    policy: &DirectoryPolicy,
    paths: &[String],
    budget: usize,
) -> Result<(Vec<Evidence>, Vec<String>), PolicyViolation> {
    let mut left = budget;
    let mut warnings = Vec::new();
    let mut out = Vec::with_capacity(paths.len());
    for given in paths {
        let body = read_one(policy, given, left)?;
        match &body {
            EvidenceBody::Text {
                content,
                total_bytes,
                truncated,
            } => {
                left = left.saturating_sub(content.len());
                if *truncated {
                    warnings.push(format!(
                        "Evidence truncated: {given} (included {} of {total_bytes} bytes; the limit is {budget} bytes in total, CLAUDE_AGENT_MCP_MAX_EVIDENCE_BYTES)",
                        content.len()
                    ));
                }
            }
            EvidenceBody::Directory { entries, truncated } => {
                let cost: usize = entries.iter().map(|e| e.len() + ENTRY_OVERHEAD_BYTES).sum();
                left = left.saturating_sub(cost);
                if *truncated {
                    warnings.push(format!(
                        "Evidence truncated: {given} (listed the first {} entries; at most {MAX_LISTED_ENTRIES} are listed, within the limit of {budget} bytes in total, CLAUDE_AGENT_MCP_MAX_EVIDENCE_BYTES)",
                        entries.len()
                    ));
                }
            }
            EvidenceBody::Unreadable { reason } => {
                warnings.push(format!("Evidence not readable: {given} ({reason})"));
            }
            EvidenceBody::Binary { .. } => {}
        }
        out.push(Evidence {
            path: given.clone(),
            body,
        });
    }
    Ok((out, warnings))
}

fn unreadable(reason: impl Into<String>) -> EvidenceBody {
    EvidenceBody::Unreadable {
        reason: reason.into(),
    }
}

/// The path of an open descriptor, through which the kernel reaches exactly that file.
fn fd_path(file: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

fn read_one(
    policy: &DirectoryPolicy,
    given: &str,
    max_bytes: usize,
) -> Result<EvidenceBody, PolicyViolation> {
    let denied = || PolicyViolation::new(ErrorCode::PolicyDenied, outside_message(given));
    let resolved = policy.resolve(given);
    if !policy.is_allowed(&resolved) {
        return Err(denied());
    }
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(&resolved)
    {
        Ok(file) => file,
        Err(e) => return Ok(unreadable(e.to_string())),
    };
    // Where the kernel says the open file is; without /proc (not Linux, or not mounted), the
    // resolution above and O_NOFOLLOW are the check.
    let through_fd = match std::fs::read_link(fd_path(&file)) {
        Ok(real) if !policy.is_allowed(&real) => return Err(denied()),
        Ok(_) => Some(fd_path(&file)),
        Err(_) => None,
    };
    let meta = match file.metadata() {
        Ok(meta) => meta,
        Err(e) => return Ok(unreadable(e.to_string())),
    };
    if meta.is_dir() {
        let dir = through_fd.unwrap_or(resolved);
        return Ok(list(&dir, max_bytes));
    }
    if !meta.is_file() {
        return Ok(unreadable("not a regular file"));
    }
    Ok(read_file(file, meta.len(), max_bytes))
}

/// The sorted entries of a directory (subdirectories end in `/`), as many as the budget pays
/// for and at most [`MAX_LISTED_ENTRIES`].
fn list(dir: &Path, max_bytes: usize) -> EvidenceBody {
    let reader = match std::fs::read_dir(dir) {
        Ok(reader) => reader,
        Err(e) => return unreadable(e.to_string()),
    };
    let mut scanned_all = true;
    let mut entries: Vec<String> = Vec::new();
    for entry in reader.filter_map(Result::ok) {
        if entries.len() == MAX_SCANNED_ENTRIES {
            scanned_all = false;
            break;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        entries.push(if entry.file_type().is_ok_and(|t| t.is_dir()) {
            format!("{name}/")
        } else {
            name
        });
    }
    entries.sort();
    let mut cost = 0usize;
    let mut keep = 0usize;
    for entry in entries.iter().take(MAX_LISTED_ENTRIES) {
        cost += entry.len() + ENTRY_OVERHEAD_BYTES;
        if cost > max_bytes {
            break;
        }
        keep += 1;
    }
    let truncated = !scanned_all || keep < entries.len();
    entries.truncate(keep);
    EvidenceBody::Directory { entries, truncated }
}

/// At most `max_bytes` of a regular file; a NUL byte near the start makes it binary.
fn read_file(file: File, total_bytes: u64, max_bytes: usize) -> EvidenceBody {
    let limit = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let capacity = usize::try_from(total_bytes.min(limit)).unwrap_or(0);
    let mut buf = Vec::with_capacity(capacity);
    if let Err(e) = file.take(limit).read_to_end(&mut buf) {
        return unreadable(e.to_string());
    }
    if buf.iter().take(BINARY_SNIFF_BYTES).any(|b| *b == 0) {
        return EvidenceBody::Binary { total_bytes };
    }
    let truncated = buf.len() > max_bytes;
    buf.truncate(max_bytes);
    let content = match String::from_utf8(buf) {
        Ok(s) => s,
        // Cut inside a multi-byte character at the budget: keep the valid prefix.
        Err(e) if truncated && e.utf8_error().error_len().is_none() => {
            let valid = e.utf8_error().valid_up_to();
            let mut bytes = e.into_bytes();
            bytes.truncate(valid);
            String::from_utf8(bytes).unwrap_or_default()
        }
        Err(_) => return EvidenceBody::Binary { total_bytes },
    };
    EvidenceBody::Text {
        content,
        total_bytes,
        truncated,
    }
}
