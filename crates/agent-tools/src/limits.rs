//! [`ToolLimits`]: the size caps of the workspace tools (documented in `docs/tools.md`).

/// Caps that keep one tool call cheap and its result small enough for the model's context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolLimits {
    /// Most bytes of file content one `read_file` call returns; the rest is cut at a line
    /// boundary with a note saying where to continue. Default 256 KiB.
    pub max_read_bytes: usize,
    /// Most characters of one line shown by `read_file` and `grep`; longer lines are cut with
    /// a note. Default 2000.
    pub max_line_chars: usize,
    /// Largest content `write_file` writes and largest file `edit_file` edits (before and
    /// after the edit). Default 1 MiB.
    pub max_write_bytes: usize,
    /// Most entries `list_directory` lists and most paths `glob` returns. Default 1000.
    pub max_entries: usize,
    /// Most matching lines `grep` returns. Default 200.
    pub max_grep_matches: usize,
    /// Most directory entries (files and directories) one `glob` or `grep` walk visits.
    /// Default 20 000.
    pub max_files_scanned: usize,
    /// Files larger than this are skipped by `grep`. Default 4 MiB.
    pub max_grep_file_bytes: u64,
}

impl ToolLimits {
    pub const DEFAULT: Self = Self {
        max_read_bytes: 256 * 1024,
        max_line_chars: 2000,
        max_write_bytes: 1024 * 1024,
        max_entries: 1000,
        max_grep_matches: 200,
        max_files_scanned: 20_000,
        max_grep_file_bytes: 4 * 1024 * 1024,
    };
}

impl Default for ToolLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
