//! The tool catalogue: names, which profiles see each tool, and the Anthropic tool definitions
//! (`{name, description, input_schema}`) the model is given.

use agent_core::{Profile, ToolDefinition};
use serde_json::{Value, json};
use std::sync::Arc;

use crate::limits::ToolLimits;

/// One built-in workspace tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    ReadFile,
    ListDirectory,
    Glob,
    Grep,
    WriteFile,
    EditFile,
}

impl Tool {
    /// Every tool, in the order they are offered.
    pub const ALL: [Tool; 6] = [
        Tool::ReadFile,
        Tool::ListDirectory,
        Tool::Glob,
        Tool::Grep,
        Tool::WriteFile,
        Tool::EditFile,
    ];

    /// The tool's name (valid for the Messages API: `^[a-zA-Z0-9_-]{1,64}$`).
    pub const fn name(self) -> &'static str {
        match self {
            Tool::ReadFile => "read_file",
            Tool::ListDirectory => "list_directory",
            Tool::Glob => "glob",
            Tool::Grep => "grep",
            Tool::WriteFile => "write_file",
            Tool::EditFile => "edit_file",
        }
    }

    pub fn parse(name: &str) -> Option<Tool> {
        Tool::ALL.into_iter().find(|tool| tool.name() == name)
    }

    /// Whether the tool changes files (and is therefore hidden from read-only profiles).
    pub const fn writes(self) -> bool {
        matches!(self, Tool::WriteFile | Tool::EditFile)
    }

    /// Whether a session of `profile` may see and call the tool.
    pub const fn visible_to(self, profile: Profile) -> bool {
        !self.writes() || !profile.read_only()
    }

    /// The tool's definition, with the limits in its description.
    pub fn definition(self, limits: &ToolLimits) -> ToolDefinition {
        let (description, input_schema) = match self {
            Tool::ReadFile => (
                format!(
                    "Read a text file in the working directory. Returns the file's text exactly as stored, \
                     without line numbers. Use offset (1-based line number to start at) and limit (number of \
                     lines) to read part of a large file. At most {} bytes are returned per call and lines \
                     longer than {} characters are cut; when the output stops early a final line in square \
                     brackets says which lines were shown and which offset to continue from. Binary files \
                     are refused. Paths are relative to the working directory and must stay inside it.",
                    limits.max_read_bytes, limits.max_line_chars
                ),
                object(
                    json!({
                        "path": {"type": "string", "description": "File path, relative to the working directory."},
                        "offset": {"type": "integer", "minimum": 1, "description": "1-based line number to start reading at (default 1)."},
                        "limit": {"type": "integer", "minimum": 1, "description": "Maximum number of lines to return (default: as many as fit)."}
                    }),
                    &["path"],
                ),
            ),
            Tool::ListDirectory => (
                format!(
                    "List a directory in the working directory, sorted by name, one entry per line: \
                     '[dir]  name/', '[file] name (N bytes)', '[link] name -> target' or '[other] name'. \
                     At most {} entries are listed. Defaults to the working directory itself.",
                    limits.max_entries
                ),
                object(
                    json!({
                        "path": {"type": "string", "description": "Directory path, relative to the working directory (default \".\")."}
                    }),
                    &[],
                ),
            ),
            Tool::Glob => (
                format!(
                    "Find files by glob pattern. The pattern is matched against each file's path relative \
                     to the search directory: '*' and '?' do not cross '/', '**' matches any number of \
                     directories (e.g. '**/*.rs', 'src/*.{{js,ts}}', '[abc]*.md'). Returns matching file \
                     paths relative to the working directory, sorted, at most {}. Symlinked directories and \
                     .git are not searched.",
                    limits.max_entries
                ),
                object(
                    json!({
                        "pattern": {"type": "string", "description": "Glob pattern, relative to the search directory."},
                        "path": {"type": "string", "description": "Directory to search, relative to the working directory (default \".\")."}
                    }),
                    &["pattern"],
                ),
            ),
            Tool::Grep => (
                format!(
                    "Search file contents with a regular expression (Rust regex syntax, matched per line). \
                     Returns matching lines as 'path:line:text', with paths relative to the working \
                     directory, sorted by path, at most {} matches. Binary files and files larger than {} \
                     bytes are skipped. Searches a single file when path names one; otherwise every file \
                     under path, optionally filtered by glob (a glob without '/' matches file names, e.g. \
                     '*.py'; one with '/' matches paths relative to path). Symlinked directories and .git are \
                     not searched.",
                    limits.max_grep_matches, limits.max_grep_file_bytes
                ),
                object(
                    json!({
                        "pattern": {"type": "string", "description": "Regular expression to search for."},
                        "path": {"type": "string", "description": "File or directory to search, relative to the working directory (default \".\")."},
                        "glob": {"type": "string", "description": "Only search files matching this glob, e.g. '*.rs'."},
                        "case_insensitive": {"type": "boolean", "description": "Match case-insensitively (default false)."}
                    }),
                    &["pattern"],
                ),
            ),
            Tool::WriteFile => (
                format!(
                    "Create a file or replace its whole content. Missing parent directories are created. \
                     The content must be at most {} bytes. The write is atomic. Prefer edit_file to change \
                     part of an existing file.",
                    limits.max_write_bytes
                ),
                object(
                    json!({
                        "path": {"type": "string", "description": "File path, relative to the working directory."},
                        "content": {"type": "string", "description": "The complete new content of the file."}
                    }),
                    &["path", "content"],
                ),
            ),
            Tool::EditFile => (
                format!(
                    "Replace text in an existing UTF-8 text file (at most {} bytes). old_string must match \
                     the file exactly, including whitespace and indentation, and must occur exactly once \
                     unless replace_all is true; otherwise the edit is refused and the file is unchanged. \
                     Read the file first to copy old_string exactly.",
                    limits.max_write_bytes
                ),
                object(
                    json!({
                        "path": {"type": "string", "description": "File path, relative to the working directory."},
                        "old_string": {"type": "string", "description": "The exact text to replace."},
                        "new_string": {"type": "string", "description": "The text to put in its place."},
                        "replace_all": {"type": "boolean", "description": "Replace every occurrence instead of requiring exactly one (default false)."}
                    }),
                    &["path", "old_string", "new_string"],
                ),
            ),
        };
        ToolDefinition {
            name: self.name().to_owned(),
            description: description.into(),
            input_schema: Arc::new(input_schema),
        }
    }
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false
    })
}
