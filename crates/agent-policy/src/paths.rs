//! Path resolution shared by the configuration and the directory policy.
//!
//! [`resolve_path`] behaves like Python's `Path.resolve()` (non-strict `realpath`): the path is
//! made absolute against a base directory, then walked one component at a time; every
//! existing symlink met on the way is replaced by its target (recursively), `.` is dropped and
//! `..` removes the last component of the path resolved *so far* (so `link/..` is the parent
//! of the link's target, exactly as the kernel would see it). Components that do not exist
//! are appended as they are. The result is therefore canonical for every existing prefix,
//! and no combination of `..` and symlinks can make the returned path name a location other
//! than the one the operating system would reach.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// How many symlinks one resolution may follow before giving up on the rest (a loop). The
/// remaining components are then appended lexically; the operating system could not
/// traverse such a path either (`ELOOP`).
const MAX_SYMLINKS: usize = 40;

/// Makes `path` absolute against `base` (itself made absolute against the process's current
/// directory if it is relative) and resolves it as described in the module documentation.
/// An empty `path` means `base`.
pub fn resolve_path(base: &Path, path: &Path) -> PathBuf {
    let joined = base.join(path);
    let absolute = if joined.is_absolute() {
        joined
    } else {
        std::path::absolute(&joined).unwrap_or(joined)
    };
    realpath(&absolute)
}

/// Component-wise containment: `/a/b` and `/a` are inside `/a`, `/ab` is not.
pub fn is_within(path: &Path, dir: &Path) -> bool {
    path.starts_with(dir)
}

/// Resolves an absolute path (see the module documentation).
fn realpath(path: &Path) -> PathBuf {
    let mut resolved = PathBuf::new();
    let mut pending: VecDeque<OsString> = VecDeque::new();
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => resolved.push(component.as_os_str()),
            other => pending.push_back(other.as_os_str().to_os_string()),
        }
    }
    let root = resolved.clone();
    let mut symlinks_followed = 0usize;

    while let Some(name) = pending.pop_front() {
        if name.is_empty() || name == "." {
            continue;
        }
        if name == ".." {
            if resolved != root {
                resolved.pop();
            }
            continue;
        }
        let candidate = resolved.join(&name);
        let is_symlink = std::fs::symlink_metadata(&candidate)
            .map(|meta| meta.file_type().is_symlink())
            .unwrap_or(false);
        if is_symlink
            && symlinks_followed < MAX_SYMLINKS
            && let Ok(target) = std::fs::read_link(&candidate)
        {
            symlinks_followed += 1;
            let mut prefix: Vec<OsString> = Vec::new();
            for component in target.components() {
                match component {
                    Component::Prefix(_) | Component::RootDir => {
                        // An absolute target restarts the walk from the root.
                        resolved = PathBuf::new();
                        resolved.push(component.as_os_str());
                    }
                    other => prefix.push(other.as_os_str().to_os_string()),
                }
            }
            for item in prefix.into_iter().rev() {
                pending.push_front(item);
            }
            continue;
        }
        resolved = candidate;
    }
    resolved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_for_missing_paths() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            resolve_path(&base, Path::new("x/./y/../z")),
            base.join("x/z")
        );
        assert_eq!(resolve_path(&base, Path::new("")), base);
        assert_eq!(resolve_path(&base, Path::new("/../..")), PathBuf::from("/"));
    }

    #[test]
    fn symlinks_are_resolved_even_under_missing_parents() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let outside = base.join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::create_dir(base.join("inside")).unwrap();
        std::os::unix::fs::symlink(&outside, base.join("inside/link")).unwrap();
        assert_eq!(
            resolve_path(&base, Path::new("inside/link/new")),
            outside.join("new")
        );
        assert_eq!(resolve_path(&base, Path::new("inside/link/..")), base);
        assert_eq!(
            resolve_path(&base, Path::new("inside/missing/../link")),
            outside
        );
        // Relative symlink targets are resolved against the link's directory.
        std::os::unix::fs::symlink("../outside", base.join("inside/rel")).unwrap();
        assert_eq!(resolve_path(&base, Path::new("inside/rel")), outside);
    }

    #[test]
    fn symlink_loops_terminate() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        std::os::unix::fs::symlink(base.join("b"), base.join("a")).unwrap();
        std::os::unix::fs::symlink(base.join("a"), base.join("b")).unwrap();
        let resolved = resolve_path(&base, Path::new("a/x"));
        assert!(resolved.starts_with(&base));
    }

    #[test]
    fn containment_is_component_wise() {
        assert!(is_within(Path::new("/a/b"), Path::new("/a")));
        assert!(is_within(Path::new("/a"), Path::new("/a")));
        assert!(!is_within(Path::new("/ab"), Path::new("/a")));
    }
}
