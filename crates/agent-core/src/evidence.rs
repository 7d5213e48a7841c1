//! Evidence and attachment contents (`docs/reference/verification.md#10-evidence-contents`): files
//! are read, bounded by a total byte budget, and given to the model with their paths; binary files
//! are named, not inlined, and directories are listed. The reading is the policy adapter's
//! ([`WorkspacePolicy::read_evidence`](crate::ports::WorkspacePolicy::read_evidence)); this module
//! only holds what was read and renders it.

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
    fn renders_one_block_per_path() {
        let evidence = [
            Evidence {
                path: "a.txt".into(),
                body: EvidenceBody::Text {
                    content: "hello\n".into(),
                    total_bytes: 6,
                    truncated: false,
                },
            },
            Evidence {
                path: "bin.dat".into(),
                body: EvidenceBody::Binary { total_bytes: 4 },
            },
            Evidence {
                path: "sub".into(),
                body: EvidenceBody::Directory {
                    entries: vec![],
                    truncated: false,
                },
            },
            Evidence {
                path: "pipe".into(),
                body: EvidenceBody::Unreadable {
                    reason: "not a regular file".into(),
                },
            },
        ];
        assert_eq!(
            render(&evidence),
            "=== a.txt (text, 6 bytes) ===\nhello\n=== end of a.txt ===\n\n=== bin.dat (binary file, 4 bytes; contents not included) ===\n\n=== sub (directory, 0 entries) ===\n=== end of sub ===\n\n=== pipe (not readable: not a regular file) ===\n"
        );
    }
}
