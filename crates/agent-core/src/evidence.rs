//! Evidence and attachment contents (`beyond.md` §5): files are read, bounded by a total byte
//! budget, and given to the model with their paths; binary files are named, not inlined, and
//! directories are listed. Reading is blocking file I/O: the engine runs it off the async
//! threads.

use std::io::Read;
use std::path::Path;

/// At most this many entries of a directory are listed.
const MAX_LISTED_ENTRIES: usize = 200;

/// What was found at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvidenceBody {
    Text {
        content: String,
        total_bytes: u64,
        truncated: bool,
    },
    Binary {
        total_bytes: u64,
    },
    Directory {
        entries: Vec<String>,
        truncated: bool,
    },
    Unreadable {
        reason: String,
    },
}

/// One path as given, with its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub path: String,
    pub body: EvidenceBody,
}

/// Reads `paths` (relative ones against `cwd`) within `budget` bytes in total. Returns the
/// evidence and a warning per truncated or unreadable path.
pub fn collect(cwd: &Path, paths: &[String], budget: usize) -> (Vec<Evidence>, Vec<String>) {
    let mut left = budget;
    let mut warnings = Vec::new();
    let mut out = Vec::with_capacity(paths.len());
    for given in paths {
        let body = read_one(&cwd.join(given), left);
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
            EvidenceBody::Unreadable { reason } => {
                warnings.push(format!("Evidence not readable: {given} ({reason})"))
            }
            EvidenceBody::Binary { .. } | EvidenceBody::Directory { .. } => {}
        }
        out.push(Evidence {
            path: given.clone(),
            body,
        });
    }
    (out, warnings)
}

fn read_one(path: &Path, max_bytes: usize) -> EvidenceBody {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            return EvidenceBody::Unreadable {
                reason: e.to_string(),
            };
        }
    };
    if meta.is_dir() {
        return match std::fs::read_dir(path) {
            Ok(dir) => {
                let mut entries: Vec<String> = dir
                    .filter_map(Result::ok)
                    .map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        if e.file_type().is_ok_and(|t| t.is_dir()) {
                            format!("{name}/")
                        } else {
                            name
                        }
                    })
                    .collect();
                entries.sort();
                let truncated = entries.len() > MAX_LISTED_ENTRIES;
                entries.truncate(MAX_LISTED_ENTRIES);
                EvidenceBody::Directory { entries, truncated }
            }
            Err(e) => EvidenceBody::Unreadable {
                reason: e.to_string(),
            },
        };
    }
    let total_bytes = meta.len();
    let mut buf = Vec::with_capacity(max_bytes.min(total_bytes as usize) + 1);
    let read =
        std::fs::File::open(path).and_then(|f| f.take(max_bytes as u64 + 1).read_to_end(&mut buf));
    if let Err(e) = read {
        return EvidenceBody::Unreadable {
            reason: e.to_string(),
        };
    }
    if buf.iter().take(8192).any(|b| *b == 0) {
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

/// Renders evidence for a prompt, one delimited block per path.
pub fn render(evidence: &[Evidence]) -> String {
    let mut out = String::new();
    for (i, e) in evidence.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let path = &e.path;
        match &e.body {
            EvidenceBody::Text {
                content,
                total_bytes,
                truncated,
            } => {
                let note = if *truncated { ", truncated" } else { "" };
                out.push_str(&format!(
                    "=== {path} (text, {total_bytes} bytes{note}) ===\n{content}"
                ));
                if !content.ends_with('\n') {
                    out.push('\n');
                }
                out.push_str(&format!("=== end of {path} ===\n"));
            }
            EvidenceBody::Binary { total_bytes } => {
                out.push_str(&format!(
                    "=== {path} (binary file, {total_bytes} bytes; contents not included) ===\n"
                ));
            }
            EvidenceBody::Directory { entries, truncated } => {
                let note = if *truncated {
                    ", first entries only"
                } else {
                    ""
                };
                out.push_str(&format!(
                    "=== {path} (directory, {} entries{note}) ===\n",
                    entries.len()
                ));
                for entry in entries {
                    out.push_str(&format!("- {entry}\n"));
                }
                out.push_str(&format!("=== end of {path} ===\n"));
            }
            EvidenceBody::Unreadable { reason } => {
                out.push_str(&format!("=== {path} (not readable: {reason}) ===\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_within_the_budget_and_warns_on_truncation() {
        let dir = std::env::temp_dir().join(format!("evidence-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.txt"), "hello\n").unwrap();
        std::fs::write(dir.join("big.txt"), "é".repeat(10)).unwrap();
        std::fs::write(dir.join("bin.dat"), [0u8, 1, 2, 3]).unwrap();
        let paths: Vec<String> = ["a.txt", "bin.dat", "sub", "big.txt", "missing"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let (evidence, warnings) = collect(&dir, &paths, 11);
        assert_eq!(
            evidence[0].body,
            EvidenceBody::Text {
                content: "hello\n".into(),
                total_bytes: 6,
                truncated: false
            }
        );
        assert_eq!(evidence[1].body, EvidenceBody::Binary { total_bytes: 4 });
        assert_eq!(
            evidence[2].body,
            EvidenceBody::Directory {
                entries: vec![],
                truncated: false
            }
        );
        // 5 bytes left: two whole "é" (4 bytes), never half a character.
        assert_eq!(
            evidence[3].body,
            EvidenceBody::Text {
                content: "éé".into(),
                total_bytes: 20,
                truncated: true
            }
        );
        assert!(matches!(evidence[4].body, EvidenceBody::Unreadable { .. }));
        assert_eq!(warnings.len(), 2);
        assert!(
            warnings[0].starts_with("Evidence truncated: big.txt (included 4 of 20 bytes"),
            "{}",
            warnings[0]
        );
        let text = render(&evidence[..3]);
        assert_eq!(
            text,
            "=== a.txt (text, 6 bytes) ===\nhello\n=== end of a.txt ===\n\n=== bin.dat (binary file, 4 bytes; contents not included) ===\n\n=== sub (directory, 0 entries) ===\n=== end of sub ===\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
