//! A fake `claude` CLI: a shell script (`fixtures/fake-claude.sh`, whose header lists its
//! control files) that records every invocation's argv, stdin, working directory, environment
//! and process ids, and prints what its control files say. The script finds its control
//! directory in [`CONTROL_VAR`], which the test hands to the child (`extra_env`, or the
//! server's environment passthrough).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The environment variable that names the fake's control directory.
pub const CONTROL_VAR: &str = "FAKE_CLAUDE_DIR";

/// The script itself.
pub const SCRIPT: &str = include_str!("../fixtures/fake-claude.sh");

/// An installed fake CLI and its control directory.
#[derive(Debug, Clone)]
pub struct FakeCli {
    path: PathBuf,
    ctl: PathBuf,
}

impl FakeCli {
    /// Writes the fake as `<bin_dir>/claude` (executable); its control files go to `ctl`.
    /// Both directories must exist.
    pub fn install(bin_dir: &Path, ctl: &Path) -> Self {
        let path = bin_dir.join("claude");
        std::fs::write(&path, SCRIPT)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("cannot make {} executable: {e}", path.display()));
        Self {
            path,
            ctl: ctl.to_path_buf(),
        }
    }

    /// The executable.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The control directory (the value of [`CONTROL_VAR`]).
    pub fn ctl(&self) -> &Path {
        &self.ctl
    }

    /// Writes a control file.
    pub fn set(&self, name: &str, content: &str) -> &Self {
        let file = self.ctl.join(name);
        std::fs::write(&file, content)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
        self
    }

    /// A control or record file (empty when missing).
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.ctl.join(name)).unwrap_or_default()
    }

    /// Whether invocation `n` (1-based, `--version` not counted) happened.
    pub fn invoked(&self, n: usize) -> bool {
        self.ctl.join(format!("argv.{n}")).exists()
    }

    /// How many times the fake ran (`--version` not counted).
    pub fn invocations(&self) -> usize {
        self.read("count").trim().parse().unwrap_or(0)
    }

    /// The arguments of invocation `n`, as given (empty ones included).
    pub fn argv(&self, n: usize) -> Vec<String> {
        let raw = self.read(&format!("argv.{n}"));
        let mut args: Vec<String> = raw.split('\0').map(str::to_owned).collect();
        args.pop(); // after the trailing NUL
        args
    }

    /// What invocation `n` read on stdin.
    pub fn stdin(&self, n: usize) -> String {
        self.read(&format!("stdin.{n}"))
    }

    /// The working directory of invocation `n` (physical).
    pub fn cwd(&self, n: usize) -> String {
        self.read(&format!("cwd.{n}")).trim().to_owned()
    }

    /// The environment of invocation `n`, one `NAME=value` a line.
    pub fn env(&self, n: usize) -> String {
        self.read(&format!("env.{n}"))
    }
}
