//! The sandbox: where a tool may read and write.
//!
//! A path the model gives is made absolute against the session's working directory and
//! resolved with [`agent_policy::paths::resolve_path`]: every existing symlink on the way is
//! replaced by its target and `..` is applied to the path resolved so far, so the result names
//! the place the operating system would reach (for a path that does not exist yet, its
//! existing prefix is resolved and the rest appended). The resolved path must then lie,
//! component-wise, inside **both** the working directory and one of the allowed directories.
//! Nothing is opened before that check.
//!
//! The check decides the error message; it does not decide what is opened. Every file and
//! directory is then opened through a directory handle ([`Sandbox::anchor`], `cap-std`): each
//! component of the path is resolved inside that handle, a symlink that would lead out of it is
//! refused, and the final component is opened without following links. So a symlink swapped
//! in between the check and the use (of a directory on the way or of the file itself) cannot
//! make a tool read, list or write outside the sandbox.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent_policy::paths::{is_within, resolve_path};
use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt};
use cap_std::ambient_authority;
use cap_std::fs::{Dir, OpenOptions, OpenOptionsExt};

use crate::error::ToolError;

/// Test support: called with each checked path just before it is used.
pub type RaceHook = Arc<dyn Fn(&Path) + Send + Sync>;

/// The sandbox of one tool call.
#[derive(Clone)]
pub(crate) struct Sandbox {
    /// The session's working directory, resolved.
    root: PathBuf,
    /// The server's allowed directories, resolved.
    allowed: Arc<[PathBuf]>,
    hook: Option<RaceHook>,
}

/// A path the model named, resolved and checked.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// Where it really is (symlinks resolved).
    pub real: PathBuf,
    /// How the model wrote it, for error messages.
    pub shown: String,
}

impl Sandbox {
    pub(crate) fn new(
        working_directory: &Path,
        allowed: Arc<[PathBuf]>,
        hook: Option<RaceHook>,
    ) -> Self {
        Self {
            root: resolve_path(working_directory, Path::new("")),
            allowed,
            hook,
        }
    }

    /// Runs the test hook, if any, on a path about to be used.
    pub(crate) fn before_use(&self, path: &Path) {
        if let Some(hook) = &self.hook {
            hook(path);
        }
    }

    /// Whether an already resolved path lies inside the working directory and an allowed
    /// directory.
    pub(crate) fn contains(&self, real: &Path) -> bool {
        is_within(real, &self.root) && self.allowed.iter().any(|dir| is_within(real, dir))
    }

    /// Resolves `input` (relative paths against the working directory) and checks it.
    pub(crate) fn resolve(&self, input: &str) -> Result<Resolved, ToolError> {
        if input.contains('\0') {
            return Err(ToolError::plain("Invalid path: it contains a NUL byte"));
        }
        let real = resolve_path(&self.root, Path::new(input));
        if !is_within(&real, &self.root) {
            return Err(ToolError::detailed(
                format!("Access denied: '{input}' is outside the session's working directory"),
                "Access denied: path is outside the session's working directory",
            ));
        }
        if !self.allowed.iter().any(|dir| is_within(&real, dir)) {
            return Err(ToolError::detailed(
                format!("Access denied: '{input}' is outside the allowed directories"),
                "Access denied: path is outside the allowed directories",
            ));
        }
        self.before_use(&real);
        Ok(Resolved {
            real,
            shown: input.to_owned(),
        })
    }

    /// The directory handle to open `target` through, and `target` relative to it (empty for
    /// the handle's directory itself). The handle is the deeper of the working directory and
    /// the allowed directory that contains `target` (both contain it), so nothing opened
    /// through it can be outside either. Opening the handle checks that it is the directory
    /// that was checked.
    pub(crate) fn anchor(&self, target: &Resolved) -> Result<(Dir, PathBuf), ToolError> {
        let real = &target.real;
        let allowed = self
            .allowed
            .iter()
            .filter(|dir| is_within(real, dir))
            .max_by_key(|dir| dir.components().count());
        let base = match allowed {
            Some(dir) if !is_within(&self.root, dir) => dir.as_path(),
            _ => self.root.as_path(),
        };
        let rel = real
            .strip_prefix(base)
            .map_err(|_| ToolError::escaped(&target.shown))?
            .to_path_buf();
        let dir = Dir::open_ambient_dir(base, ambient_authority())
            .map_err(|e| ToolError::opened("open", &target.shown, &e))?;
        check_handle(&dir, base, &target.shown)?;
        Ok((dir, rel))
    }

    /// Opens the file `target` for reading through its [`anchor`](Self::anchor).
    pub(crate) fn open_read(
        &self,
        target: &Resolved,
        verb: &str,
    ) -> Result<std::fs::File, ToolError> {
        let (dir, rel) = self.anchor(target)?;
        dir.open_with(non_empty(&rel), &read_options())
            .map(cap_std::fs::File::into_std)
            .map_err(|e| ToolError::opened(verb, &target.shown, &e))
    }

    /// Opens the directory `target` through its [`anchor`](Self::anchor).
    pub(crate) fn open_dir(&self, target: &Resolved, verb: &str) -> Result<Dir, ToolError> {
        let (dir, rel) = self.anchor(target)?;
        if rel.as_os_str().is_empty() {
            return Ok(dir);
        }
        open_dir_nofollow(&dir, &rel).map_err(|e| {
            if through_link(&dir, &rel) {
                ToolError::escaped(&target.shown)
            } else {
                ToolError::opened(verb, &target.shown, &e)
            }
        })
    }

    /// Resolves `name` inside the already checked directory `dir` (a walk meeting a symlink);
    /// `None` when it leads out of the sandbox.
    pub(crate) fn resolve_entry(&self, dir: &Path, name: &std::ffi::OsStr) -> Option<PathBuf> {
        let real = resolve_path(dir, Path::new(name));
        self.contains(&real).then_some(real)
    }

    /// `real` relative to the working directory with `/` separators (`.` for the directory
    /// itself); paths shown to the model can be passed back to any tool.
    pub(crate) fn display(&self, real: &Path) -> String {
        match real.strip_prefix(&self.root) {
            Ok(rel) if rel.as_os_str().is_empty() => ".".to_owned(),
            Ok(rel) => join_components(rel),
            Err(_) => real.to_string_lossy().into_owned(),
        }
    }
}

/// A relative path with `/` separators.
pub(crate) fn join_components(rel: &Path) -> String {
    let parts: Vec<_> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect();
    parts.join("/")
}

/// `.` for an empty relative path (the handle's own directory).
pub(crate) fn non_empty(rel: &Path) -> &Path {
    if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    }
}

/// Reading: never follows a final symlink, never waits on a FIFO (`O_NONBLOCK`), never
/// acquires a terminal.
pub(crate) fn read_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true);
    options.follow(FollowSymlinks::No);
    options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    options
}

/// Opens `rel` (its intermediate components resolved inside `dir`) as a directory, refusing a
/// final component that is a symlink.
pub(crate) fn open_dir_nofollow(dir: &Dir, rel: &Path) -> std::io::Result<Dir> {
    use cap_fs_ext::DirExt;
    dir.open_dir_nofollow(rel)
}

/// The opened handle must be the directory that was resolved and checked (one swapped for a
/// link between the resolution and the open is refused). Where `/proc` is not mounted the
/// check is skipped: the handle was opened from an absolute, resolved path.
fn check_handle(dir: &Dir, expected: &Path, shown: &str) -> Result<(), ToolError> {
    use std::os::fd::AsRawFd;
    match std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd())) {
        Ok(actual) if actual != expected => Err(ToolError::escaped(shown)),
        _ => Ok(()),
    }
}

/// Whether some component of `rel` inside `dir` is (now) a symlink, or cannot be looked at
/// without leaving `dir`: tells "swapped for a link" apart from an ordinary failure.
pub(crate) fn through_link(dir: &Dir, rel: &Path) -> bool {
    let mut prefix = PathBuf::new();
    for component in rel.components() {
        prefix.push(component);
        match dir.symlink_metadata(&prefix) {
            Ok(meta) if meta.is_symlink() => return true,
            Ok(_) => {}
            Err(e) => return e.kind() == std::io::ErrorKind::PermissionDenied,
        }
    }
    false
}
