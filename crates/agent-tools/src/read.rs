//! The reading tools that name one path: `read_file` and `list_directory`.

use std::io::{BufReader, Read, Seek};

use agent_core::text::truncate_bytes;
use serde::Deserialize;

use crate::error::ToolError;
use crate::limits::ToolLimits;
use crate::sandbox::Sandbox;
use crate::text::{SNIFF_BYTES, cut_line, looks_binary, read_line_capped};

/// The output of `read_file` for an empty file.
pub(crate) const EMPTY_FILE: &str = "[empty file]";
/// The output of `list_directory` for an empty directory.
pub(crate) const EMPTY_DIRECTORY: &str = "[empty directory]";

#[derive(Debug, Deserialize)]
pub(crate) struct ReadFileInput {
    path: String,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    limit: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListDirectoryInput {
    #[serde(default)]
    path: Option<String>,
}

enum Stop {
    End,
    Limit,
    Bytes,
}

/// `read_file`: the file's text from line `offset` (1-based), at most `limit` lines and
/// `max_read_bytes` bytes, exactly as stored (no line numbers); a note follows when the output
/// stops before the end of the file.
pub(crate) fn read_file(
    sandbox: &Sandbox,
    input: ReadFileInput,
    limits: &ToolLimits,
) -> Result<String, ToolError> {
    let offset = input.offset.unwrap_or(1);
    if offset == 0 {
        return Err(ToolError::plain(
            "offset must be at least 1 (the first line is line 1)",
        ));
    }
    if input.limit == Some(0) {
        return Err(ToolError::plain("limit must be at least 1"));
    }
    let target = sandbox.resolve(&input.path)?;
    let shown = target.shown.as_str();
    let io_err = |e: std::io::Error| ToolError::io("read", shown, &e);
    // Opened through the sandbox's directory handle; the type is checked on the open file.
    let mut file = sandbox.open_read(&target, "read")?;
    let meta = file.metadata().map_err(io_err)?;
    if meta.is_dir() {
        return Err(ToolError::is_directory(
            shown,
            "; use list_directory to see its entries",
        ));
    }
    if !meta.is_file() {
        return Err(ToolError::not_regular(shown));
    }
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    (&mut file)
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(io_err)?;
    if looks_binary(&head) {
        return Err(ToolError::detailed(
            format!("'{shown}' appears to be a binary file; read_file only reads text files"),
            "File appears to be binary",
        ));
    }
    file.rewind().map_err(io_err)?;

    let mut reader = BufReader::new(file);
    let line_cap = limits.max_line_chars.saturating_mul(4).max(4);
    let mut buf = Vec::new();
    let mut out = String::new();
    let mut line_no = 0u64;
    let mut first: Option<u64> = None;
    let mut last = 0u64;
    let mut shown_lines = 0u64;
    let stop = loop {
        let Some(info) = read_line_capped(&mut reader, line_cap, &mut buf).map_err(io_err)? else {
            break Stop::End;
        };
        line_no += 1;
        if line_no < offset {
            continue;
        }
        if input.limit.is_some_and(|limit| shown_lines >= limit) {
            break Stop::Limit;
        }
        let mut text = cut_line(
            &String::from_utf8_lossy(&buf),
            limits.max_line_chars,
            info.cut,
        );
        if info.newline {
            text.push('\n');
        }
        if out.len() + text.len() > limits.max_read_bytes {
            if out.is_empty() {
                // One line larger than the whole budget: show its start.
                out.push_str(truncate_bytes(&text, limits.max_read_bytes));
                first = Some(line_no);
                last = line_no;
            }
            break Stop::Bytes;
        }
        out.push_str(&text);
        first.get_or_insert(line_no);
        last = line_no;
        shown_lines += 1;
    };

    let Some(first) = first else {
        if line_no == 0 && offset == 1 {
            return Ok(EMPTY_FILE.to_owned());
        }
        return Err(ToolError::detailed(
            format!(
                "offset {offset} is past the end of '{shown}', which has {}",
                crate::text::plural(line_no as usize, "line", "lines")
            ),
            "offset is past the end of the file",
        ));
    };
    let note = match stop {
        Stop::End => return Ok(out),
        Stop::Limit => format!(
            "[Showing lines {first}-{last}; the file continues. Use offset={} to read more.]",
            last + 1
        ),
        Stop::Bytes => format!(
            "[Truncated: read_file returns at most {} bytes; showing lines {first}-{last}. Use offset={} to read more.]",
            limits.max_read_bytes,
            last + 1
        ),
    };
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&note);
    Ok(out)
}

/// `list_directory`: one line per entry, sorted by name: `[dir]  name/`, `[file] name (N
/// bytes)`, `[link] name -> target` (the target relative to the working directory, or
/// `(outside the sandbox)`), `[other] name`.
pub(crate) fn list_directory(
    sandbox: &Sandbox,
    input: ListDirectoryInput,
    limits: &ToolLimits,
) -> Result<String, ToolError> {
    let target = sandbox.resolve(input.path.as_deref().unwrap_or("."))?;
    let shown = target.shown.as_str();
    // Listed through the sandbox's directory handle (a file here is `not a directory`).
    let dir = sandbox.open_dir(&target, "list")?;
    let mut entries: Vec<_> = dir
        .entries()
        .map_err(|e| ToolError::io("list", shown, &e))?
        .filter_map(Result::ok)
        .collect();
    if entries.is_empty() {
        return Ok(EMPTY_DIRECTORY.to_owned());
    }
    entries.sort_by_key(|entry| entry.file_name());
    let total = entries.len();
    let mut lines = Vec::with_capacity(total.min(limits.max_entries) + 1);
    for entry in entries.iter().take(limits.max_entries) {
        let name = entry.file_name();
        let display = name.to_string_lossy();
        let line = match entry.file_type() {
            Ok(kind) if kind.is_dir() => format!("[dir]  {display}/"),
            Ok(kind) if kind.is_file() => {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                format!("[file] {display} ({size} bytes)")
            }
            Ok(kind) if kind.is_symlink() => match sandbox.resolve_entry(&target.real, &name) {
                Some(real) => format!("[link] {display} -> {}", sandbox.display(&real)),
                None => format!("[link] {display} -> (outside the sandbox)"),
            },
            _ => format!("[other] {display}"),
        };
        lines.push(line);
    }
    if total > limits.max_entries {
        lines.push(format!(
            "[{} more entries not shown]",
            total - limits.max_entries
        ));
    }
    Ok(lines.join("\n"))
}
