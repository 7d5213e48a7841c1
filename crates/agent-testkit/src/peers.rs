//! The outside programs ("peers") some tests talk to, and the one way a test requires one.
//!
//! A test that needs a peer starts with
//!
//! ```no_run
//! let Some(cli) = agent_testkit::peers::claude_cli() else { return };
//! ```
//!
//! When the peer is not configured, the helper writes one `SKIPPED <test>: …` line to the real
//! stderr (past the test harness's output capture, so `cargo test` shows it) and returns `None`.
//! With `CLAUDE_AGENT_MCP_REQUIRE_PEERS=1` (set by CI: `cargo xtask release-check`) it panics
//! instead, so a missing peer fails the test rather than passing it unseen.
//!
//! Every test-harness variable is named here (see `docs/testing.md`):
//!
//! | variable | meaning |
//! | --- | --- |
//! | [`CLAUDE_CLI_VAR`] | the path of a real Claude Code CLI (`scripts/install-claude-cli.sh`) |
//! | [`EVERYTHING_SERVER_VAR`] | the command line of the reference MCP server (`scripts/install-mcp-peers.sh`) |
//! | [`NGINX_VAR`] | the path of nginx, for the load-balancer tests (`scripts/install-nginx.sh`) |
//! | [`HAPROXY_VAR`] | the path of HAProxy, for the load-balancer tests (`scripts/install-haproxy.sh`) |
//! | [`POSTGRES_URL_VAR`](crate::postgres::POSTGRES_URL_VAR) | the PostgreSQL of the store tests ([`crate::postgres`]) |
//! | [`REQUIRE_PEERS_VAR`] | `1`: a missing peer fails the test; unset, empty or `0`: it skips |
//! | [`PROPTEST_CASES_VAR`] | the case count of every property (re-exported from `agent_core::testing`, which `agent-core`'s own unit tests use) |

use std::io::Write;
use std::path::{Path, PathBuf};

/// Names the real Claude Code CLI binary.
pub const CLAUDE_CLI_VAR: &str = "CLAUDE_AGENT_MCP_TEST_CLAUDE_CLI";
/// Names the reference MCP server's command line: what `scripts/install-mcp-peers.sh` prints
/// (split on whitespace), a JSON array of the command and its arguments, or the path of its
/// `dist/index.js` (run with `node … stdio`).
pub const EVERYTHING_SERVER_VAR: &str = "CLAUDE_AGENT_MCP_TEST_EVERYTHING_SERVER";
/// Names the nginx binary the load-balancer tests put in front of a fleet.
pub const NGINX_VAR: &str = "CLAUDE_AGENT_MCP_TEST_NGINX";
/// Names the HAProxy binary the load-balancer tests put in front of a fleet.
pub const HAPROXY_VAR: &str = "CLAUDE_AGENT_MCP_TEST_HAPROXY";
/// `1`: every peer a test asks for is required, and a missing one panics.
pub const REQUIRE_PEERS_VAR: &str = "CLAUDE_AGENT_MCP_REQUIRE_PEERS";
/// The property case count lives with the unit tests that need it too (`agent-core`'s own
/// cannot link this crate); it is re-exported here beside the other test-harness variables.
pub use agent_core::testing::{DEFAULT_PROPTEST_CASES, PROPTEST_CASES_VAR, proptest_cases};

/// A peer: the variable that names it and how to install it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The variable that names it.
    pub var: &'static str,
    /// What it is, for messages.
    pub what: &'static str,
    /// The script that installs it and prints the variable's value.
    pub install: &'static str,
}

/// The real Claude Code CLI.
pub const CLAUDE_CLI: Peer = Peer {
    var: CLAUDE_CLI_VAR,
    what: "a real Claude Code CLI",
    install: "scripts/install-claude-cli.sh",
};

/// The reference MCP server, `@modelcontextprotocol/server-everything`.
pub const EVERYTHING_SERVER: Peer = Peer {
    var: EVERYTHING_SERVER_VAR,
    what: "the reference MCP server (@modelcontextprotocol/server-everything)",
    install: "scripts/install-mcp-peers.sh",
};

/// nginx (Debian's `nginx-light`).
pub const NGINX: Peer = Peer {
    var: NGINX_VAR,
    what: "nginx",
    install: "scripts/install-nginx.sh",
};

/// HAProxy (Debian's `haproxy`).
pub const HAPROXY: Peer = Peer {
    var: HAPROXY_VAR,
    what: "HAProxy",
    install: "scripts/install-haproxy.sh",
};

/// The program `peer`'s variable names; `None` (skip) when it is not set.
///
/// # Panics
/// When it is not set under `CLAUDE_AGENT_MCP_REQUIRE_PEERS=1`, or names no file.
pub fn program(peer: Peer) -> Option<PathBuf> {
    let path = PathBuf::from(require_in(peer, &process_env)?);
    assert!(
        path.is_file(),
        "{}={} names no file (run `bash {}`)",
        peer.var,
        path.display(),
        peer.install
    );
    Some(path)
}

/// A variable lookup: the process environment in tests, a fixed table in this module's own
/// tests (so they never mutate the environment other tests read).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment (a value that is not UTF-8 is read lossily).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

/// A command line: the program and its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCommand {
    pub program: String,
    pub args: Vec<String>,
}

/// The real Claude Code CLI named by [`CLAUDE_CLI_VAR`]; `None` (skip) when it is not set.
///
/// # Panics
/// When it is not set under `CLAUDE_AGENT_MCP_REQUIRE_PEERS=1`, or names no file.
pub fn claude_cli() -> Option<PathBuf> {
    claude_cli_in(&process_env)
}

/// [`claude_cli`] with the variables read from `env`.
pub fn claude_cli_in(env: Lookup<'_>) -> Option<PathBuf> {
    let path = PathBuf::from(require_in(CLAUDE_CLI, env)?);
    assert!(
        path.is_file(),
        "{CLAUDE_CLI_VAR}={} names no file (run `bash {}`)",
        path.display(),
        CLAUDE_CLI.install
    );
    Some(path)
}

/// The reference MCP server's command line from [`EVERYTHING_SERVER_VAR`]; `None` (skip) when
/// it is not set.
///
/// # Panics
/// When it is not set under `CLAUDE_AGENT_MCP_REQUIRE_PEERS=1`, or cannot be read as a command.
pub fn everything_server() -> Option<PeerCommand> {
    everything_server_in(&process_env)
}

/// [`everything_server`] with the variables read from `env`.
pub fn everything_server_in(env: Lookup<'_>) -> Option<PeerCommand> {
    let raw = require_in(EVERYTHING_SERVER, env)?;
    let raw = raw.trim();
    let parts: Vec<String> = if raw.starts_with('[') {
        match serde_json::from_str(raw) {
            Ok(parts) => parts,
            Err(e) => panic!("{EVERYTHING_SERVER_VAR}: not a JSON array of strings: {e}"),
        }
    } else if raw.ends_with(".js") && !raw.contains(char::is_whitespace) {
        vec!["node".to_owned(), raw.to_owned(), "stdio".to_owned()]
    } else {
        raw.split_whitespace().map(str::to_owned).collect()
    };
    let Some((program, args)) = parts.split_first() else {
        panic!("{EVERYTHING_SERVER_VAR}: the command line is empty");
    };
    Some(PeerCommand {
        program: program.clone(),
        args: args.to_vec(),
    })
}

/// The value of `peer`'s variable, or `None` after a `SKIPPED` note on stderr when it is unset
/// or blank.
///
/// # Panics
/// When the peer is missing and [`peers_required_in`] says peers are required.
pub fn require_in(peer: Peer, env: Lookup<'_>) -> Option<String> {
    if let Some(value) = env(peer.var).filter(|v| !v.trim().is_empty()) {
        return Some(value);
    }
    let missing = format!(
        "{} needs {}, and {} is not set (export {}=\"$(bash {})\")",
        current_test(),
        peer.what,
        peer.var,
        peer.var,
        peer.install
    );
    assert!(
        !peers_required_in(env),
        "{missing}; {REQUIRE_PEERS_VAR}=1 makes a missing peer a failure"
    );
    note_skip(format!("SKIPPED {missing}"));
    None
}

/// Writes a skip note past the harness's capture of `eprintln!`, so that `cargo test` shows it
/// (this module's own tests keep their notes to check them).
fn note_skip(line: String) {
    #[cfg(test)]
    let Some(line) = tests::capture(line) else {
        return;
    };
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Whether [`REQUIRE_PEERS_VAR`] requires every peer: `1` yes; unset, empty or `0` no.
///
/// # Panics
/// On any other value, so that a typo never turns a requirement into a skip.
pub fn peers_required_in(env: Lookup<'_>) -> bool {
    match env(REQUIRE_PEERS_VAR).as_deref().map(str::trim) {
        None | Some("" | "0") => false,
        Some("1") => true,
        Some(other) => panic!("{REQUIRE_PEERS_VAR} must be 1 or 0, not {other:?}"),
    }
}

/// One recorded run of a peer through a [`RecordingWrapper`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// Its pid: the peer's own once it has replaced the wrapper (`exec`), so the leader of the
    /// process group when the code under test starts it in its own group.
    pub pid: i32,
    /// Its arguments (without the program).
    pub args: Vec<String>,
}

/// A shell script standing in for a peer's binary that records every run (pid and arguments)
/// in a file before it replaces itself with the peer (`exec`, same pid). The code under test
/// runs the wrapper instead of the peer; the test then knows exactly which processes ran with
/// which arguments, without sampling the process table while they run. The script needs no
/// `PATH`.
pub struct RecordingWrapper {
    dir: PathBuf,
}

impl RecordingWrapper {
    /// Writes the wrapper of `program` into `dir` (created if needed).
    ///
    /// # Panics
    /// When the files cannot be written.
    pub fn new(dir: &Path, program: &Path) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let calls = dir.join("calls");
        std::fs::create_dir_all(&calls)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", calls.display()));
        let quote = |p: &Path| format!("'{}'", p.to_string_lossy().replace('\'', r"'\''"));
        let script = format!(
            "#!/bin/sh\nprintf '%s\\000' \"$@\" > {}/\"$$\"\nexec {} \"$@\"\n",
            quote(&calls),
            quote(program)
        );
        let wrapper = dir.join("wrapper");
        std::fs::write(&wrapper, script)
            .and_then(|()| {
                std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
            })
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", wrapper.display()));
        Self {
            dir: dir.to_owned(),
        }
    }

    /// The wrapper's path: what the code under test should run.
    pub fn path(&self) -> PathBuf {
        self.dir.join("wrapper")
    }

    /// Every run so far, oldest first.
    ///
    /// # Panics
    /// When the records cannot be read.
    pub fn invocations(&self) -> Vec<Invocation> {
        let calls = self.dir.join("calls");
        let entries = std::fs::read_dir(&calls)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", calls.display()));
        let mut runs: Vec<(std::time::SystemTime, Invocation)> = entries
            .map(|entry| {
                let entry =
                    entry.unwrap_or_else(|e| panic!("cannot read {}: {e}", calls.display()));
                let name = entry.file_name().to_string_lossy().into_owned();
                let pid = name
                    .parse()
                    .unwrap_or_else(|_| panic!("unexpected record {name} in {}", calls.display()));
                let written = entry.metadata().and_then(|m| m.modified());
                let bytes = std::fs::read(entry.path());
                let (Ok(written), Ok(bytes)) = (written, bytes) else {
                    panic!("cannot read the record {name} in {}", calls.display());
                };
                let mut args: Vec<String> = bytes
                    .split(|b| *b == 0)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                // printf leaves one terminator after each argument (and one for no argument).
                args.pop();
                if args.len() == 1 && args[0].is_empty() && bytes.len() == 1 {
                    args.clear();
                }
                (written, Invocation { pid, args })
            })
            .collect();
        runs.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.pid.cmp(&b.1.pid)));
        runs.into_iter().map(|(_, run)| run).collect()
    }

    /// The runs whose arguments include `arg`.
    pub fn invocations_with(&self, arg: &str) -> Vec<Invocation> {
        self.invocations()
            .into_iter()
            .filter(|run| run.args.iter().any(|a| a == arg))
            .collect()
    }
}

/// The running test's name (libtest names each test's thread after it).
fn current_test() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_owned(),
        _ => "this test".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    thread_local! {
        /// The skip notes of this thread, while a test captures them.
        static NOTES: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
    }

    /// Keeps `line` when this thread captures notes; gives it back otherwise.
    pub(super) fn capture(line: String) -> Option<String> {
        NOTES.with(|notes| match notes.borrow_mut().as_mut() {
            Some(kept) => {
                kept.push(line);
                None
            }
            None => Some(line),
        })
    }

    /// Runs `f` and returns what it returned with the skip notes it wrote.
    fn capturing<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
        NOTES.with(|notes| *notes.borrow_mut() = Some(Vec::new()));
        let result = f();
        let notes = NOTES.with(|notes| notes.borrow_mut().take().unwrap_or_default());
        (result, notes)
    }

    /// A fixed set of variables instead of the process environment.
    fn table(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn a_configured_peer_is_returned() {
        let exe = std::env::current_exe().unwrap();
        let exe = exe.to_str().unwrap();
        let env = table(&[(CLAUDE_CLI_VAR, exe), (REQUIRE_PEERS_VAR, "1")]);
        assert_eq!(claude_cli_in(&env), Some(PathBuf::from(exe)));
    }

    #[test]
    fn a_missing_peer_skips_when_peers_are_not_required() {
        for require in [None, Some(""), Some("0")] {
            let mut vars = vec![(CLAUDE_CLI_VAR, "  ")];
            vars.extend(require.map(|r| (REQUIRE_PEERS_VAR, r)));
            let env = table(&vars);
            let (found, notes) = capturing(|| (claude_cli_in(&env), everything_server_in(&env)));
            assert_eq!(found, (None, None), "{require:?}");
            assert_eq!(notes.len(), 2, "{notes:?}");
            for (note, peer) in notes.iter().zip([CLAUDE_CLI, EVERYTHING_SERVER]) {
                assert!(note.starts_with("SKIPPED "), "{note}");
                assert!(
                    note.contains(&format!(
                        " needs {}, and {} is not set (export {}=\"$(bash {})\")",
                        peer.what, peer.var, peer.var, peer.install
                    )),
                    "{note}"
                );
            }
        }
    }

    #[test]
    #[should_panic(
        expected = "needs a real Claude Code CLI, and CLAUDE_AGENT_MCP_TEST_CLAUDE_CLI is not set \
                    (export CLAUDE_AGENT_MCP_TEST_CLAUDE_CLI=\"$(bash scripts/install-claude-cli.sh)\"); \
                    CLAUDE_AGENT_MCP_REQUIRE_PEERS=1 makes a missing peer a failure"
    )]
    fn a_missing_cli_fails_when_peers_are_required() {
        claude_cli_in(&table(&[(REQUIRE_PEERS_VAR, "1")]));
    }

    #[test]
    #[should_panic(expected = "needs the reference MCP server")]
    fn a_missing_mcp_server_fails_when_peers_are_required() {
        everything_server_in(&table(&[
            (REQUIRE_PEERS_VAR, " 1 "),
            (EVERYTHING_SERVER_VAR, ""),
        ]));
    }

    #[test]
    #[should_panic(expected = "CLAUDE_AGENT_MCP_REQUIRE_PEERS must be 1 or 0, not \"yes\"")]
    fn any_other_requirement_value_is_refused() {
        claude_cli_in(&table(&[(REQUIRE_PEERS_VAR, "yes")]));
    }

    #[test]
    #[should_panic(expected = "names no file")]
    fn a_cli_path_that_names_no_file_fails_even_when_not_required() {
        claude_cli_in(&table(&[(CLAUDE_CLI_VAR, "/nonexistent/claude")]));
    }

    #[test]
    fn the_mcp_server_command_line_forms() {
        let command = |raw: &str| everything_server_in(&table(&[(EVERYTHING_SERVER_VAR, raw)]));
        let expected = |program: &str, args: &[&str]| {
            Some(PeerCommand {
                program: program.to_owned(),
                args: args.iter().map(|a| (*a).to_owned()).collect(),
            })
        };
        assert_eq!(
            command("node /c/everything/dist/index.js stdio\n"),
            expected("node", &["/c/everything/dist/index.js", "stdio"])
        );
        assert_eq!(
            command(r#"["/my node", "/a b/index.js", "stdio"]"#),
            expected("/my node", &["/a b/index.js", "stdio"])
        );
        assert_eq!(
            command("/c/everything/dist/index.js"),
            expected("node", &["/c/everything/dist/index.js", "stdio"])
        );
    }

    #[test]
    #[should_panic(expected = "not a JSON array of strings")]
    fn a_broken_json_command_line_fails() {
        everything_server_in(&table(&[(EVERYTHING_SERVER_VAR, "[\"node\", 1]")]));
    }

    /// This module owns the names: `docs/testing.md` documents each of them, and CI
    /// (`cargo xtask release-check`) sets the peers' and the requirement's under these names.
    #[test]
    fn the_variables_are_documented_and_ci_sets_these_names() {
        let doc = include_str!("../../../docs/testing.md");
        let release = include_str!("../../../xtask/src/release.rs");
        for var in [
            CLAUDE_CLI_VAR,
            EVERYTHING_SERVER_VAR,
            NGINX_VAR,
            HAPROXY_VAR,
            crate::postgres::POSTGRES_URL_VAR,
            REQUIRE_PEERS_VAR,
            PROPTEST_CASES_VAR,
        ] {
            assert!(
                doc.contains(&format!("| `{var}` |")),
                "docs/testing.md: {var}"
            );
        }
        for var in [
            CLAUDE_CLI_VAR,
            EVERYTHING_SERVER_VAR,
            NGINX_VAR,
            HAPROXY_VAR,
            crate::postgres::POSTGRES_URL_VAR,
            REQUIRE_PEERS_VAR,
        ] {
            assert!(
                release.contains(&format!("\"{var}\"")),
                "xtask/src/release.rs: {var}"
            );
        }
        for peer in [CLAUDE_CLI, EVERYTHING_SERVER, NGINX, HAPROXY] {
            assert!(
                release.contains(&format!("\"{}\"", peer.install)),
                "xtask/src/release.rs installs {} with {}",
                peer.var,
                peer.install
            );
        }
    }
}
