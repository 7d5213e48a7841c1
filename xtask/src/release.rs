//! `cargo xtask release-check`: CI's one definition (`.ci/run` runs exactly this), everything a
//! release must pass: formatting; the real peers installed (the Claude Code CLI and the
//! reference MCP server, from the npm registry, into `~/.cache`) and required; lints; schema
//! drift; the supply-chain checks; the MCP conformance suite; and the whole test suite (with
//! the configuration-docs drift test), closed by one `tests: N passed, M failed` line.
//!
//! Every step runs from the workspace root and the first failure stops the check. Every test
//! talks only to 127.0.0.1 or to local child processes.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The test-harness variables this check sets for the tests. Their owner is
/// `agent_testkit::peers` (a test there checks that these are its names).
const CLAUDE_CLI_VAR: &str = "CLAUDE_AGENT_MCP_TEST_CLAUDE_CLI";
const EVERYTHING_SERVER_VAR: &str = "CLAUDE_AGENT_MCP_TEST_EVERYTHING_SERVER";
const REQUIRE_PEERS_VAR: &str = "CLAUDE_AGENT_MCP_REQUIRE_PEERS";

/// The peers: the variable each one's install script prints the value of.
const PEERS: &[(&str, &str)] = &[
    (CLAUDE_CLI_VAR, "scripts/install-claude-cli.sh"),
    (EVERYTHING_SERVER_VAR, "scripts/install-mcp-peers.sh"),
];

/// The cargo-deny CI installs when it is not on `PATH`, and where.
const CARGO_DENY_VERSION: &str = "0.20.2";
const CARGO_DENY_CACHE: &str = ".cache/claude-agent-mcp/cargo-deny";

/// One step: a description and the command line (`cargo` is the running cargo).
struct Step {
    what: &'static str,
    program: &'static str,
    args: &'static [&'static str],
}

const FORMAT: Step = Step {
    what: "format",
    program: "cargo",
    args: &["fmt", "--all", "--", "--check"],
};

const CHECKS: &[Step] = &[
    Step {
        what: "lints",
        program: "cargo",
        args: &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
    },
    Step {
        what: "agent-core alone (its declared tokio features, not the workspace's union)",
        program: "cargo",
        args: &["check", "-p", "agent-core", "--lib", "--locked"],
    },
    Step {
        what: "schemas match the code",
        program: "cargo",
        args: &["xtask", "schema", "--check"],
    },
    Step {
        what: "supply chain (cargo-deny: licenses, bans, sources; advisories need a network CI lacks)",
        program: "cargo",
        args: &["deny", "check", "licenses", "bans", "sources"],
    },
    Step {
        what: "MCP conformance suite (server scenarios over streamable HTTP)",
        program: "bash",
        args: &["scripts/conformance.sh"],
    },
];

const TESTS: Step = Step {
    what: "tests (the README's test command, every peer required)",
    program: "cargo",
    args: &["test", "--workspace", "--locked"],
};

/// Runs every step, stopping at the first failure.
pub fn release_check(root: &Path) -> Result<(), String> {
    let mut ci = Ci::new(root);
    ci.run(&FORMAT)?;
    ci.install_peers()?;
    ci.install_cargo_deny()?;
    for step in CHECKS {
        ci.run(step)?;
    }
    ci.tests()?;
    eprintln!("release check passed");
    Ok(())
}

/// The workspace root and the environment every step gets.
struct Ci {
    root: PathBuf,
    cargo: String,
    env: Vec<(String, String)>,
}

impl Ci {
    fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            cargo: std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()),
            env: Vec::new(),
        }
    }

    fn command(&self, step: &Step) -> Command {
        let program = if step.program == "cargo" {
            self.cargo.as_str()
        } else {
            step.program
        };
        eprintln!(
            "== {} ({} {})",
            step.what,
            step.program,
            step.args.join(" ")
        );
        let mut command = Command::new(program);
        command
            .args(step.args)
            .current_dir(&self.root)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    fn run(&self, step: &Step) -> Result<(), String> {
        let status = self
            .command(step)
            .status()
            .map_err(|e| format!("{}: cannot run {}: {e}", step.what, step.program))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("release check failed at: {}", step.what))
        }
    }

    /// Installs each peer with its script (which prints the variable's value on stdout) and
    /// requires them all for the tests.
    fn install_peers(&mut self) -> Result<(), String> {
        eprintln!("== real peers for the interoperability tests (npm)");
        for (var, script) in PEERS {
            let output = Command::new("bash")
                .arg(script)
                .current_dir(&self.root)
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| format!("cannot run bash {script}: {e}"))?;
            let value = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            if !output.status.success() || value.is_empty() {
                return Err(format!("release check failed at: installing {script}"));
            }
            eprintln!("{var}={value}");
            self.env.push(((*var).to_owned(), value));
        }
        self.env
            .push((REQUIRE_PEERS_VAR.to_owned(), "1".to_owned()));
        Ok(())
    }

    /// Puts cargo-deny on `PATH`: the one already there, or the pinned version installed into
    /// `~/.cache` (once).
    fn install_cargo_deny(&mut self) -> Result<(), String> {
        let path = std::env::var("PATH").unwrap_or_default();
        let on_path = std::env::split_paths(&path).any(|dir| dir.join("cargo-deny").is_file());
        if on_path {
            return Ok(());
        }
        let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".to_owned());
        let root = Path::new(&home).join(CARGO_DENY_CACHE);
        if !root.join("bin/cargo-deny").is_file() {
            eprintln!(
                "== installing cargo-deny {CARGO_DENY_VERSION} into {}",
                root.display()
            );
            let status = Command::new(&self.cargo)
                .args([
                    "install",
                    "--locked",
                    "cargo-deny",
                    "--version",
                    CARGO_DENY_VERSION,
                ])
                .arg("--root")
                .arg(&root)
                .status()
                .map_err(|e| format!("cannot run cargo install: {e}"))?;
            if !status.success() {
                return Err("release check failed at: installing cargo-deny".to_owned());
            }
        }
        let mut dirs = vec![root.join("bin")];
        dirs.extend(std::env::split_paths(&path));
        let joined = std::env::join_paths(dirs).map_err(|e| format!("PATH: {e}"))?;
        self.env
            .push(("PATH".to_owned(), joined.to_string_lossy().into_owned()));
        Ok(())
    }

    /// The test suite, echoed as it runs, then one closing line for the whole run (cargo's
    /// last summary is a crate with no doc-tests).
    fn tests(&self) -> Result<(), String> {
        let mut child = self
            .command(&TESTS)
            .env(REQUIRE_PEERS_VAR, "1")
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: cannot run cargo: {e}", TESTS.what))?;
        let (mut passed, mut failed) = (0_u64, 0_u64);
        let mut out = std::io::stdout().lock();
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).lines() {
                let line = line.map_err(|e| format!("reading the test output: {e}"))?;
                let _ = writeln!(out, "{line}");
                let (p, f) = summary_counts(&line);
                passed += p;
                failed += f;
            }
        }
        let status = child.wait().map_err(|e| format!("{}: {e}", TESTS.what))?;
        let _ = writeln!(out, "tests: {passed} passed, {failed} failed");
        if status.success() {
            Ok(())
        } else {
            Err(format!("release check failed at: {}", TESTS.what))
        }
    }
}

/// The passed and failed counts of a libtest `test result:` line (zeros for any other line).
fn summary_counts(line: &str) -> (u64, u64) {
    let Some(rest) = line.strip_prefix("test result: ") else {
        return (0, 0);
    };
    let words: Vec<&str> = rest.split_whitespace().collect();
    let count = |label: &str| {
        words
            .windows(2)
            .find(|w| w[1].trim_end_matches([';', ',']) == label)
            .and_then(|w| w[0].parse::<u64>().ok())
            .unwrap_or(0)
    };
    (count("passed"), count("failed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines_are_counted() {
        assert_eq!(
            summary_counts(
                "test result: ok. 35 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 14.59s"
            ),
            (35, 0)
        );
        assert_eq!(
            summary_counts("test result: FAILED. 3 passed; 2 failed; 1 ignored; 0 measured"),
            (3, 2)
        );
        assert_eq!(summary_counts("test foo ... ok"), (0, 0));
    }
}
