//! Text helpers shared by the tools: binary sniffing, bounded line reading and line cutting.

use std::io::{self, BufRead};

/// How many leading bytes are inspected to decide that a file is binary.
pub(crate) const SNIFF_BYTES: usize = 8192;

/// The marker appended to a line cut at `max_line_chars`.
pub(crate) const LINE_CUT_MARKER: &str = " … [line truncated]";

/// A file is treated as binary when its first [`SNIFF_BYTES`] bytes hold a NUL byte.
pub(crate) fn looks_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(SNIFF_BYTES)].contains(&0)
}

/// What [`read_line_capped`] saw of one line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LineInfo {
    /// The line was longer than the cap and only its start was kept.
    pub cut: bool,
    /// The line ended with `\n` (not kept in the buffer).
    pub newline: bool,
}

/// Reads one line (through `\n`, which is consumed but not kept), keeping at most `cap` bytes
/// of it in `buf` and discarding the rest; `None` at the end of the input. Memory stays bounded
/// however long the line is.
pub(crate) fn read_line_capped<R: BufRead>(
    reader: &mut R,
    cap: usize,
    buf: &mut Vec<u8>,
) -> io::Result<Option<LineInfo>> {
    buf.clear();
    let mut any = false;
    let mut cut = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(any.then_some(LineInfo {
                cut,
                newline: false,
            }));
        }
        any = true;
        let newline_at = available.iter().position(|&b| b == b'\n');
        let chunk = match newline_at {
            Some(i) => &available[..i],
            None => available,
        };
        let room = cap.saturating_sub(buf.len());
        if chunk.len() > room {
            cut = true;
            buf.extend_from_slice(&chunk[..room]);
        } else {
            buf.extend_from_slice(chunk);
        }
        let used = newline_at.map_or(available.len(), |i| i + 1);
        reader.consume(used);
        if newline_at.is_some() {
            return Ok(Some(LineInfo { cut, newline: true }));
        }
    }
}

/// `line` cut to `max_chars` characters with [`LINE_CUT_MARKER`] when it is longer (or when
/// `already_cut`, i.e. its end was never read).
pub(crate) fn cut_line(line: &str, max_chars: usize, already_cut: bool) -> String {
    match line.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}{LINE_CUT_MARKER}", &line[..at]),
        None if already_cut => format!("{line}{LINE_CUT_MARKER}"),
        None => line.to_owned(),
    }
}

/// `1 file` / `2 files`.
pub(crate) fn plural(count: usize, one: &str, many: &str) -> String {
    if count == 1 {
        format!("{count} {one}")
    } else {
        format!("{count} {many}")
    }
}
