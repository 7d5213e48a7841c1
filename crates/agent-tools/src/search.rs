//! The searching tools: `glob` and `grep`, over a bounded walk that never leaves the sandbox.
//!
//! The walk visits a directory's entries in name order, depth first, so results come out
//! sorted by path. It never descends into a symlinked directory (nor into `.git`); a symlinked
//! file is included only when its target resolves inside the sandbox. At most
//! `max_files_scanned` entries are visited; past that the output says the search stopped.

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use cap_std::fs::{Dir, FileType};

use globset::{GlobBuilder, GlobMatcher};
use regex::RegexBuilder;
use serde::Deserialize;

use crate::error::ToolError;
use crate::limits::ToolLimits;
use crate::sandbox::{Resolved, Sandbox, open_dir_nofollow, read_options};
use crate::text::{cut_line, looks_binary, plural};

#[derive(Debug, Deserialize)]
pub(crate) struct GlobInput {
    pattern: String,
    #[serde(default)]
    path: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct GrepInput {
    pattern: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    glob: Option<String>,
    #[serde(default)]
    case_insensitive: Option<bool>,
}

/// A file met by the walk.
struct Found<'a> {
    /// Where the walk met it (a symlink's own path), for display.
    entry: &'a Path,
    /// Its path relative to the walk's base, with `/` separators.
    rel: &'a str,
    /// Its name.
    name: &'a str,
    /// The file, opened through a directory handle, when the walk was asked to open files.
    file: Option<fs::File>,
}

/// Whether the walk visited every entry.
struct Walked {
    complete: bool,
}

type Level = (
    Dir,
    PathBuf,
    String,
    std::vec::IntoIter<(OsString, FileType)>,
);

/// Walks the directory `base` (its handle `base_dir`, inside the sandbox) and calls `on_file`
/// for each file until it answers false. Directories are entered through handles opened
/// without following links, and files (when `open_files`) are opened without following their
/// final link, so an entry swapped for a symlink after it was listed is skipped. A symlink
/// listed as such is used only when it resolves to a file inside the sandbox, and is then
/// opened through the sandbox's own handle.
fn walk(
    sandbox: &Sandbox,
    base_dir: Dir,
    base: &Path,
    max_visits: usize,
    open_files: bool,
    mut on_file: impl FnMut(Found<'_>) -> bool,
) -> Walked {
    let first = entries(&base_dir);
    let mut stack: Vec<Level> = vec![(base_dir, base.to_path_buf(), String::new(), first)];
    let mut visited = 0usize;
    while let Some((dir, path, prefix, iter)) = stack.last_mut() {
        let Some((name, kind)) = iter.next() else {
            stack.pop();
            continue;
        };
        if visited >= max_visits {
            return Walked { complete: false };
        }
        visited += 1;
        let name_text = name.to_string_lossy();
        let rel = if prefix.is_empty() {
            name_text.to_string()
        } else {
            format!("{prefix}/{name_text}")
        };
        let entry = path.join(&name);
        if kind.is_dir() {
            if name != ".git" {
                sandbox.before_use(&entry);
                if let Ok(child) = open_dir_nofollow(dir, Path::new(&name)) {
                    let children = entries(&child);
                    stack.push((child, entry, rel, children));
                }
            }
            continue;
        }
        let file = if kind.is_file() {
            sandbox.before_use(&entry);
            if open_files {
                match dir.open_with(&name, &read_options()) {
                    Ok(file) => Some(file.into_std()),
                    Err(_) => continue,
                }
            } else {
                None
            }
        } else if kind.is_symlink() {
            let Some(real) = sandbox.resolve_entry(path, &name) else {
                continue;
            };
            sandbox.before_use(&real);
            let target = Resolved {
                real,
                shown: rel.clone(),
            };
            match sandbox.open_read(&target, "search") {
                Ok(file) if file.metadata().is_ok_and(|m| m.is_file()) => {
                    open_files.then_some(file)
                }
                _ => continue,
            }
        } else {
            continue;
        };
        if let Some(file) = &file
            && !file.metadata().is_ok_and(|m| m.is_file())
        {
            continue;
        }
        let found = Found {
            entry: &entry,
            rel: &rel,
            name: &name_text,
            file,
        };
        if !on_file(found) {
            return Walked { complete: true };
        }
    }
    Walked { complete: true }
}

/// A directory's entries sorted by name; unreadable directories and entries are skipped.
fn entries(dir: &Dir) -> std::vec::IntoIter<(OsString, FileType)> {
    let mut list: Vec<(OsString, FileType)> = match dir.entries() {
        Ok(read) => read
            .filter_map(Result::ok)
            .filter_map(|e| e.file_type().ok().map(|kind| (e.file_name(), kind)))
            .collect(),
        Err(_) => Vec::new(),
    };
    list.sort_by(|a, b| a.0.cmp(&b.0));
    list.into_iter()
}

fn compile_glob(pattern: &str) -> Result<GlobMatcher, ToolError> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|glob| glob.compile_matcher())
        .map_err(|e| {
            ToolError::detailed(
                format!("Invalid glob pattern '{pattern}': {}", e.kind()),
                "Invalid glob pattern",
            )
        })
}

fn walk_stopped_note(limits: &ToolLimits) -> String {
    format!(
        "[Search stopped after visiting {} entries; results are incomplete. Narrow the path or pattern.]",
        limits.max_files_scanned
    )
}

/// `glob`: files under `path` whose path relative to `path` matches `pattern`, shown relative
/// to the working directory, sorted, at most `max_entries`.
pub(crate) fn glob(
    sandbox: &Sandbox,
    input: GlobInput,
    limits: &ToolLimits,
) -> Result<String, ToolError> {
    let pattern = input.pattern.trim_start_matches("./");
    if pattern.is_empty() {
        return Err(ToolError::plain("pattern must not be empty"));
    }
    if pattern.starts_with('/') {
        return Err(ToolError::plain(
            "glob patterns are matched against paths relative to the search directory; give a relative pattern and choose the directory with 'path'",
        ));
    }
    let matcher = compile_glob(pattern)?;
    let base = sandbox.resolve(input.path.as_deref().unwrap_or("."))?;
    let base_dir = sandbox.open_dir(&base, "search")?;
    let mut matches = Vec::new();
    let walked = walk(
        sandbox,
        base_dir,
        &base.real,
        limits.max_files_scanned,
        false,
        |found| {
            if matcher.is_match(found.rel) {
                matches.push(sandbox.display(found.entry));
            }
            true
        },
    );
    let mut lines: Vec<String> = matches.iter().take(limits.max_entries).cloned().collect();
    if matches.is_empty() {
        lines.push(format!("No files match '{}'", input.pattern));
    }
    if matches.len() > limits.max_entries {
        lines.push(format!(
            "[{} more matches not shown; narrow the pattern or path]",
            matches.len() - limits.max_entries
        ));
    }
    if !walked.complete {
        lines.push(walk_stopped_note(limits));
    }
    Ok(lines.join("\n"))
}

/// What one grep call collected.
#[derive(Default)]
struct GrepState {
    lines: Vec<String>,
    capped: bool,
    binary: usize,
    large: usize,
}

/// `grep`: lines matching a regular expression, as `path:line:text`.
pub(crate) fn grep(
    sandbox: &Sandbox,
    input: GrepInput,
    limits: &ToolLimits,
) -> Result<String, ToolError> {
    let regex = RegexBuilder::new(&input.pattern)
        .case_insensitive(input.case_insensitive.unwrap_or(false))
        .build()
        .map_err(|e| {
            ToolError::detailed(
                format!("Invalid regular expression: {e}"),
                "Invalid regular expression",
            )
        })?;
    let filter = match input.glob.as_deref().map(|g| g.trim_start_matches("./")) {
        Some(g) if !g.is_empty() => Some((compile_glob(g)?, g.contains('/'))),
        _ => None,
    };
    let target = sandbox.resolve(input.path.as_deref().unwrap_or("."))?;
    // Opened through the sandbox's handle; what it is is asked of the open file.
    let opened = sandbox.open_read(&target, "search")?;
    let meta = opened
        .metadata()
        .map_err(|e| ToolError::io("search", &target.shown, &e))?;

    let mut state = GrepState::default();
    let mut search = |file: fs::File, shown: &str| -> bool {
        search_file(file, shown, &regex, limits, &mut state);
        !state.capped
    };
    let complete = if meta.is_dir() {
        drop(opened);
        let base_dir = sandbox.open_dir(&target, "search")?;
        walk(
            sandbox,
            base_dir,
            &target.real,
            limits.max_files_scanned,
            true,
            |found| {
                if let Some((glob, by_path)) = &filter {
                    let candidate = if *by_path { found.rel } else { found.name };
                    if !glob.is_match(candidate) {
                        return true;
                    }
                }
                let shown = sandbox.display(found.entry);
                match found.file {
                    Some(file) => search(file, &shown),
                    None => true,
                }
            },
        )
        .complete
    } else if meta.is_file() {
        search(opened, &sandbox.display(&target.real));
        true
    } else {
        return Err(ToolError::not_regular(&target.shown));
    };

    let mut lines = std::mem::take(&mut state.lines);
    if lines.is_empty() {
        lines.push(format!("No matches for '{}'", input.pattern));
    }
    if state.capped {
        lines.push(format!(
            "[Stopped after {}; narrow the pattern, path or glob to see the rest.]",
            plural(limits.max_grep_matches, "match", "matches")
        ));
    }
    if state.binary > 0 {
        lines.push(format!(
            "[Skipped {}]",
            plural(state.binary, "binary file", "binary files")
        ));
    }
    if state.large > 0 {
        lines.push(format!(
            "[Skipped {} larger than {} bytes]",
            plural(state.large, "file", "files"),
            limits.max_grep_file_bytes
        ));
    }
    if !complete {
        lines.push(walk_stopped_note(limits));
    }
    Ok(lines.join("\n"))
}

/// Searches one file, skipping it when it is too large, unreadable or binary.
fn search_file(
    file: fs::File,
    shown: &str,
    regex: &regex::Regex,
    limits: &ToolLimits,
    state: &mut GrepState,
) {
    let mut bytes = Vec::new();
    if file
        .take(limits.max_grep_file_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .is_err()
    {
        return;
    }
    if bytes.len() as u64 > limits.max_grep_file_bytes {
        state.large += 1;
        return;
    }
    if looks_binary(&bytes) {
        state.binary += 1;
        return;
    }
    let text = String::from_utf8_lossy(&bytes);
    for (index, line) in text.lines().enumerate() {
        if regex.is_match(line) {
            if state.lines.len() >= limits.max_grep_matches {
                state.capped = true;
                return;
            }
            let line = cut_line(line, limits.max_line_chars, false);
            state.lines.push(format!("{shown}:{}:{line}", index + 1));
        }
    }
}
