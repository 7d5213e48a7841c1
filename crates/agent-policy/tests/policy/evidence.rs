//! Evidence and attachment reading through `WorkspacePolicy::read_evidence`: every path is
//! checked as it is opened, only regular files are read, and everything that reaches the
//! prompt is charged to the byte budget (`docs/verification.md`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use agent_core::evidence::{EvidenceBody, render};
use agent_core::{ErrorCode, WorkspacePolicy};
use agent_policy::DirectoryPolicy;
use tempfile::TempDir;

/// A canonical root with `allowed/` (the CWD and the allowlist) and `outside/secret.txt`.
struct Fixture {
    _dir: TempDir,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("allowed")).unwrap();
        std::fs::create_dir_all(root.join("outside")).unwrap();
        std::fs::write(root.join("outside/secret.txt"), "s3cr3t").unwrap();
        Self { _dir: dir, root }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    fn policy(&self) -> DirectoryPolicy {
        DirectoryPolicy::new(self.path("allowed"), [self.path("allowed")])
    }
}

fn strings(paths: &[&str]) -> Vec<String> {
    paths.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn reads_within_the_budget_and_warns_on_truncation() {
    let f = Fixture::new();
    let dir = f.path("allowed");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("a.txt"), "hello\n").unwrap();
    std::fs::write(dir.join("big.txt"), "é".repeat(10)).unwrap();
    std::fs::write(dir.join("bin.dat"), [0u8, 1, 2, 3]).unwrap();
    let paths = strings(&["a.txt", "bin.dat", "sub", "big.txt", "missing"]);
    let (evidence, warnings) = f.policy().read_evidence(&paths, 11).unwrap();
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
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with("Evidence truncated: big.txt (included 4 of 20 bytes"),
        "{}",
        warnings[0]
    );
    assert!(warnings[1].starts_with("Evidence not readable: missing ("));
    assert_eq!(
        render(&evidence[..3]),
        "=== a.txt (text, 6 bytes) ===\nhello\n=== end of a.txt ===\n\n=== bin.dat (binary file, 4 bytes; contents not included) ===\n\n=== sub (directory, 0 entries) ===\n=== end of sub ===\n"
    );
}

#[test]
fn a_path_outside_is_a_policy_error_and_nothing_is_returned() {
    let f = Fixture::new();
    std::fs::write(f.path("allowed/ok.txt"), "fine").unwrap();
    let secret = f.path("outside/secret.txt").to_string_lossy().into_owned();
    let err = f
        .policy()
        .read_evidence(&["ok.txt".to_owned(), secret.clone()], 1000)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::PolicyDenied);
    assert_eq!(
        err.message,
        format!("Attachment '{secret}' is outside allowed directories")
    );
    // Through `..` as well.
    let err = f
        .policy()
        .read_evidence(&["../outside/secret.txt".to_owned()], 1000)
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::PolicyDenied);
}

#[test]
fn symlinks_leading_outside_are_refused_files_and_directories() {
    let f = Fixture::new();
    symlink(f.path("outside/secret.txt"), f.path("allowed/link.txt")).unwrap();
    symlink(f.path("outside"), f.path("allowed/linkdir")).unwrap();
    for given in ["link.txt", "linkdir", "linkdir/secret.txt"] {
        let err = f
            .policy()
            .read_evidence(&[given.to_owned()], 1000)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::PolicyDenied, "{given}");
    }
    // A symlink that stays inside is followed.
    std::fs::write(f.path("allowed/real.txt"), "real").unwrap();
    symlink(f.path("allowed/real.txt"), f.path("allowed/alias.txt")).unwrap();
    let (evidence, _) = f
        .policy()
        .read_evidence(&["alias.txt".to_owned()], 1000)
        .unwrap();
    assert!(matches!(&evidence[0].body, EvidenceBody::Text { content, .. } if content == "real"));
}

#[test]
fn a_fifo_is_not_readable_and_never_blocks() {
    let f = Fixture::new();
    let fifo = f.path("allowed/pipe");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    let (evidence, warnings) = f
        .policy()
        .read_evidence(&["pipe".to_owned()], 1000)
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        evidence[0].body,
        EvidenceBody::Unreadable {
            reason: "not a regular file".into()
        }
    );
    assert_eq!(
        warnings,
        ["Evidence not readable: pipe (not a regular file)"]
    );
    // A device is refused the same way (and is outside the allowlist anyway).
    let policy = DirectoryPolicy::new("/dev", ["/dev"]);
    let (evidence, _) = policy.read_evidence(&["zero".to_owned()], 1000).unwrap();
    assert!(matches!(evidence[0].body, EvidenceBody::Unreadable { .. }));
}

#[test]
fn directory_listings_are_charged_to_the_budget() {
    let f = Fixture::new();
    let many = f.path("allowed/many");
    std::fs::create_dir(&many).unwrap();
    for i in 0..1000 {
        std::fs::write(many.join(format!("entry-{i:04}.txt")), "").unwrap();
    }
    std::fs::write(f.path("allowed/after.txt"), "x".repeat(100)).unwrap();
    // Each entry costs its name and `- ` and a newline: 17 bytes. 100 bytes pay for 5.
    let (evidence, warnings) = f
        .policy()
        .read_evidence(&["many".to_owned(), "after.txt".to_owned()], 100)
        .unwrap();
    let EvidenceBody::Directory { entries, truncated } = &evidence[0].body else {
        panic!("{:?}", evidence[0]);
    };
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[0], "entry-0000.txt");
    assert!(*truncated);
    // What is left (15 bytes) is all the next file gets.
    assert!(
        matches!(&evidence[1].body, EvidenceBody::Text { content, truncated: true, .. } if content.len() == 15),
        "{:?}",
        evidence[1]
    );
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].starts_with("Evidence truncated: many (listed the first 5 entries"));
    // With a large budget, at most 200 entries are listed.
    let (evidence, _) = f
        .policy()
        .read_evidence(&["many".to_owned()], 1 << 20)
        .unwrap();
    assert!(
        matches!(&evidence[0].body, EvidenceBody::Directory { entries, truncated: true } if entries.len() == 200)
    );
}

#[test]
fn a_continuation_directory_must_still_exist_inside_the_allowlist() {
    let f = Fixture::new();
    std::fs::create_dir(f.path("allowed/project")).unwrap();
    let project = f.path("allowed/project").to_string_lossy().into_owned();
    let policy = f.policy();
    assert_eq!(
        policy.reresolve_working_directory(&project).unwrap(),
        f.path("allowed/project")
    );
    std::fs::remove_dir(f.path("allowed/project")).unwrap();
    let err = policy.reresolve_working_directory(&project).unwrap_err();
    assert_eq!(err.code, ErrorCode::PolicyDenied);
    assert_eq!(
        err.message,
        format!("working_directory '{project}' no longer exists or is not a directory")
    );
    // A file is not a directory.
    std::fs::write(f.path("allowed/project"), "").unwrap();
    assert!(policy.reresolve_working_directory(&project).is_err());
    // Now outside: the stored path is a symlink that was re-pointed.
    std::fs::remove_file(f.path("allowed/project")).unwrap();
    symlink(f.path("outside"), f.path("allowed/project")).unwrap();
    let err = policy.reresolve_working_directory(&project).unwrap_err();
    assert!(
        err.message.starts_with(&format!(
            "working_directory '{}' is not in the server's allowed_dirs",
            f.path("outside").display()
        )),
        "{}",
        err.message
    );
}
