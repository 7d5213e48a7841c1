//! The directory policy through its public API (`docs/reference/policy.md#3-working-directory`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use agent_core::{ErrorCode, WorkspacePolicy};
use agent_policy::{CliOverrides, DirectoryPolicy, config};
use tempfile::TempDir;

/// A canonical temporary root with `allowed/`, `allowed/sub/`, `allowed/file.txt`,
/// `outside/` and `outside/secret.txt`.
struct Fixture {
    _dir: TempDir,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("allowed/sub")).unwrap();
        std::fs::create_dir_all(root.join("outside")).unwrap();
        std::fs::write(root.join("allowed/file.txt"), "x").unwrap();
        std::fs::write(root.join("outside/secret.txt"), "s").unwrap();
        Self { _dir: dir, root }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// CWD = `allowed/`, allowlist = [`allowed/`].
    fn policy(&self) -> DirectoryPolicy {
        DirectoryPolicy::new(self.path("allowed"), [self.path("allowed")])
    }

    fn denied_message(&self, resolved: &Path, policy: &DirectoryPolicy) -> String {
        let allowed: Vec<String> = policy
            .allowed_dirs()
            .iter()
            .map(|d| format!("'{}'", d.display()))
            .collect();
        format!(
            "working_directory '{}' is not in the server's allowed_dirs. Allowed: [{}]",
            resolved.display(),
            allowed.join(", ")
        )
    }
}

fn assert_denied(policy: &DirectoryPolicy, fixture: &Fixture, requested: &str, resolved: &Path) {
    let err = policy
        .resolve_working_directory(Some(requested))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::PolicyDenied, "{requested}");
    assert_eq!(
        err.message,
        fixture.denied_message(resolved, policy),
        "{requested}"
    );
}

#[test]
fn the_cwd_is_used_when_nothing_is_requested() {
    let f = Fixture::new();
    let policy = f.policy();
    assert_eq!(policy.cwd(), f.path("allowed"));
    assert_eq!(
        policy.resolve_working_directory(None).unwrap(),
        f.path("allowed")
    );
    assert_eq!(
        policy.resolve_working_directory(Some("")).unwrap(),
        f.path("allowed")
    );
}

#[test]
fn a_cwd_outside_the_allowlist_denies_the_default() {
    let f = Fixture::new();
    let policy = DirectoryPolicy::new(f.path("outside"), [f.path("allowed")]);
    assert_eq!(
        policy.resolve_working_directory(None).unwrap_err().message,
        f.denied_message(&f.path("outside"), &policy)
    );
}

#[test]
fn inside_and_outside() {
    let f = Fixture::new();
    let policy = f.policy();
    let sub = f.path("allowed/sub");
    assert_eq!(
        policy
            .resolve_working_directory(Some(sub.to_str().unwrap()))
            .unwrap(),
        sub
    );
    assert_eq!(
        policy
            .resolve_working_directory(Some(f.path("allowed").to_str().unwrap()))
            .unwrap(),
        f.path("allowed")
    );
    assert_denied(
        &policy,
        &f,
        f.path("outside").to_str().unwrap(),
        &f.path("outside"),
    );
    assert_denied(&policy, &f, "/", Path::new("/"));
}

#[test]
fn containment_is_component_wise() {
    let f = Fixture::new();
    std::fs::create_dir(f.path("a")).unwrap();
    std::fs::create_dir(f.path("ab")).unwrap();
    let policy = DirectoryPolicy::new(f.path("a"), [f.path("a")]);
    assert_denied(&policy, &f, f.path("ab").to_str().unwrap(), &f.path("ab"));
    assert!(
        policy
            .resolve_working_directory(Some(f.path("a/b").to_str().unwrap()))
            .is_ok()
    );
}

#[test]
fn relative_directories_resolve_against_the_cwd() {
    let f = Fixture::new();
    let policy = f.policy();
    assert_eq!(
        policy.resolve_working_directory(Some("sub")).unwrap(),
        f.path("allowed/sub")
    );
    assert_eq!(
        policy
            .resolve_working_directory(Some("./sub/../sub/."))
            .unwrap(),
        f.path("allowed/sub")
    );
    // The allowlist itself may be relative to the CWD.
    let relative = DirectoryPolicy::new(f.path("allowed"), ["sub", "."]);
    assert_eq!(
        relative.allowed_dirs(),
        [f.path("allowed/sub"), f.path("allowed")]
    );
}

#[test]
fn a_missing_directory_inside_the_allowlist_is_accepted() {
    let f = Fixture::new();
    let policy = f.policy();
    assert_eq!(
        policy
            .resolve_working_directory(Some("new/deeper"))
            .unwrap(),
        f.path("allowed/new/deeper")
    );
    assert_eq!(
        policy
            .resolve_working_directory(Some("missing/../sub"))
            .unwrap(),
        f.path("allowed/sub")
    );
}

#[test]
fn dot_dot_cannot_escape() {
    let f = Fixture::new();
    let policy = f.policy();
    assert_denied(&policy, &f, "../outside", &f.path("outside"));
    assert_denied(&policy, &f, "sub/../../outside/new", &f.path("outside/new"));
    assert_denied(&policy, &f, "missing/../../outside", &f.path("outside"));
}

#[test]
fn symlinks_cannot_escape() {
    let f = Fixture::new();
    symlink(f.path("outside"), f.path("allowed/escape")).unwrap();
    symlink("../outside/secret.txt", f.path("allowed/secret-link")).unwrap();
    let policy = f.policy();
    assert_denied(&policy, &f, "escape", &f.path("outside"));
    assert_denied(&policy, &f, "escape/not-yet", &f.path("outside/not-yet"));
    assert_denied(&policy, &f, "missing/../escape", &f.path("outside"));

    let err = policy.check_attachment("secret-link").unwrap_err();
    assert_eq!(
        (err.code, err.message.as_str()),
        (
            ErrorCode::PolicyDenied,
            "Attachment 'secret-link' is outside allowed directories"
        )
    );
    let err = policy.check_attachment("escape/secret.txt").unwrap_err();
    assert_eq!(err.code, ErrorCode::PolicyDenied);
}

#[test]
fn a_symlinked_allowlist_entry_allows_its_target() {
    let f = Fixture::new();
    symlink(f.path("allowed"), f.path("alias")).unwrap();
    let policy = DirectoryPolicy::new(f.path("alias"), [f.path("alias")]);
    assert_eq!(policy.allowed_dirs(), [f.path("allowed")]);
    assert_eq!(policy.cwd(), f.path("allowed"));
    assert_eq!(
        policy
            .resolve_working_directory(Some(f.path("alias/sub").to_str().unwrap()))
            .unwrap(),
        f.path("allowed/sub")
    );
}

#[test]
fn several_allowed_dirs_are_listed_in_the_message() {
    let f = Fixture::new();
    let policy = DirectoryPolicy::new(
        f.path("allowed"),
        [f.path("allowed"), f.path("allowed/sub")],
    );
    let err = policy
        .resolve_working_directory(Some("../outside"))
        .unwrap_err();
    assert_eq!(
        err.message,
        format!(
            "working_directory '{}' is not in the server's allowed_dirs. Allowed: ['{}', '{}']",
            f.path("outside").display(),
            f.path("allowed").display(),
            f.path("allowed/sub").display()
        )
    );
    let none = DirectoryPolicy::new(f.path("allowed"), Vec::<PathBuf>::new());
    assert!(
        none.resolve_working_directory(None)
            .unwrap_err()
            .message
            .ends_with("Allowed: []")
    );
}

#[test]
fn attachments() {
    let f = Fixture::new();
    let policy = f.policy();
    assert_eq!(
        policy.check_attachment("file.txt").unwrap(),
        f.path("allowed/file.txt")
    );
    assert_eq!(
        policy
            .check_attachment(f.path("allowed/sub").to_str().unwrap())
            .unwrap(),
        f.path("allowed/sub")
    );

    let err = policy.check_attachment("missing.txt").unwrap_err();
    assert_eq!(err.code, ErrorCode::ValidationError);
    assert_eq!(err.message, "Attachment path does not exist: missing.txt");

    let err = policy
        .check_attachment("../outside/secret.txt")
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::PolicyDenied);
    assert_eq!(
        err.message,
        "Attachment '../outside/secret.txt' is outside allowed directories"
    );

    // Existence is checked first.
    let err = policy.check_attachment("../outside/nope.txt").unwrap_err();
    assert_eq!(err.code, ErrorCode::ValidationError);

    // Quirk: the allowed directory itself fails, because its parent is outside.
    let given = f.path("allowed");
    let err = policy
        .check_attachment(given.to_str().unwrap())
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::PolicyDenied);
    assert_eq!(
        err.message,
        format!(
            "Attachment '{}' is outside allowed directories",
            given.display()
        )
    );
}

#[test]
fn path_exists_is_relative_to_the_cwd() {
    let f = Fixture::new();
    let policy = f.policy();
    assert!(policy.path_exists("file.txt"));
    assert!(policy.path_exists(f.path("outside/secret.txt").to_str().unwrap()));
    assert!(!policy.path_exists("nope.txt"));
}

#[test]
fn the_policy_follows_the_configuration() {
    let f = Fixture::new();
    let vars: BTreeMap<String, String> = [(
        "CLAUDE_AGENT_MCP_ALLOWED_DIRS".to_owned(),
        "sub, ../outside".to_owned(),
    )]
    .into_iter()
    .collect();
    let config = config::from_vars(&vars, &f.path("allowed"), &CliOverrides::default()).unwrap();
    let policy = DirectoryPolicy::from_config(&config);
    assert_eq!(policy.cwd(), f.path("allowed"));
    assert_eq!(
        policy.allowed_dirs(),
        [f.path("allowed/sub"), f.path("outside")]
    );
    assert!(policy.resolve_working_directory(None).is_err());
    assert!(policy.resolve_working_directory(Some("sub")).is_ok());
    assert!(policy.check_attachment("../outside/secret.txt").is_ok());
}

// The crate's other suites, in this one test binary.
#[path = "policy/docs_drift.rs"]
mod docs_drift;
#[path = "policy/evidence.rs"]
mod evidence;
