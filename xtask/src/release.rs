//! `cargo xtask release-check`: CI's one definition (`.ci/run` runs exactly this), everything a
//! release must pass: formatting; the real peers installed (the Claude Code CLI and the
//! reference MCP server, from the npm registry, into `~/.cache`) and required; a PostgreSQL at
//! 127.0.0.1:5432 for the store tests (started, or installed from Debian's packages, when none
//! answers: [`Ci::ensure_postgres`]); lints; schema
//! drift; the supply-chain checks; the MCP conformance suite; the deployed server's build and
//! its check (`cargo xtask dist`); and the whole test suite (with
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
const NGINX_VAR: &str = "CLAUDE_AGENT_MCP_TEST_NGINX";
const HAPROXY_VAR: &str = "CLAUDE_AGENT_MCP_TEST_HAPROXY";
const REQUIRE_PEERS_VAR: &str = "CLAUDE_AGENT_MCP_REQUIRE_PEERS";
const POSTGRES_URL_VAR: &str = "CLAUDE_AGENT_MCP_TEST_POSTGRES_URL";

/// The PostgreSQL the store tests use: trust auth on the loopback, database `test` (the same as
/// `agent_testkit::postgres::DEFAULT_POSTGRES_URL`).
const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const POSTGRES_ADDR: &str = "127.0.0.1:5432";
const POSTGRES_DATABASE: &str = "test";
/// The lines `ensure_postgres` puts first in a cluster's `pg_hba.conf`.
const TRUST_LOCAL_TCP: &str = "host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n";

/// The peers: the variable each one's install script prints the value of.
const PEERS: &[(&str, &str)] = &[
    (CLAUDE_CLI_VAR, "scripts/install-claude-cli.sh"),
    (EVERYTHING_SERVER_VAR, "scripts/install-mcp-peers.sh"),
    (NGINX_VAR, "scripts/install-nginx.sh"),
    (HAPROXY_VAR, "scripts/install-haproxy.sh"),
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
    Step {
        what: "MCP conformance suite, the 2026-07-28 requirement set (pre-release suite)",
        program: "bash",
        args: &["scripts/conformance.sh", "--requirements", "2026-07-28"],
    },
    Step {
        what: "the deployed server: built as measured (glibc static on x86_64 Linux), linked as intended, runs a task through `localhost`",
        program: "cargo",
        args: &["xtask", "dist"],
    },
];

const TESTS: Step = Step {
    what: "tests (the README's test command, every peer required)",
    program: "cargo",
    args: &["test", "--workspace", "--locked"],
};

/// `cargo xtask ensure-postgres`: only the PostgreSQL step ([`Ci::ensure_postgres`]), for a
/// developer's machine and for trying that step on its own.
pub fn ensure_postgres(root: &Path) -> Result<(), String> {
    Ci::new(root).ensure_postgres()
}

/// Runs every step, stopping at the first failure.
pub fn release_check(root: &Path) -> Result<(), String> {
    let mut ci = Ci::new(root);
    ci.run(&FORMAT)?;
    ci.install_peers()?;
    ci.ensure_postgres()?;
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

    /// A PostgreSQL at [`POSTGRES_ADDR`] with trust auth for loopback TCP and a database
    /// [`POSTGRES_DATABASE`], exported to the tests as [`POSTGRES_URL_VAR`] (and required, with
    /// every other peer). When none answers: Debian's `postgresql` is installed (`apt-get`)
    /// unless it is there, a cluster is created when there is none (`pg_createcluster`),
    /// loopback TCP is trusted in each cluster's `pg_hba.conf`, and the clusters are started
    /// (`pg_ctlcluster`, which needs no init system).
    fn ensure_postgres(&mut self) -> Result<(), String> {
        eprintln!(
            "== PostgreSQL for the store tests ({POSTGRES_ADDR}, database {POSTGRES_DATABASE})"
        );
        if !postgres_answers() {
            if !Path::new("/usr/bin/pg_ctlcluster").is_file() {
                run_quiet("apt-get", &["update", "-q"])?;
                run_quiet(
                    "apt-get",
                    &[
                        "install",
                        "-y",
                        "-q",
                        "--no-install-recommends",
                        "postgresql",
                    ],
                )?;
            }
            let mut clusters = postgres_clusters()?;
            if clusters.is_empty() {
                // Installed without a cluster (Debian's `create_main_cluster = false`, or the
                // cluster was dropped): one for the newest installed server, on our port.
                let version = newest_postgres_version()?;
                let port = POSTGRES_ADDR.rsplit(':').next().unwrap_or("5432");
                run_quiet("pg_createcluster", &["--port", port, &version, "main"])?;
                clusters = postgres_clusters()?;
            }
            if clusters.is_empty() {
                return Err("release check failed at: PostgreSQL installed, but no cluster in /etc/postgresql".to_owned());
            }
            for (version, name) in &clusters {
                let hba = PathBuf::from(format!("/etc/postgresql/{version}/{name}/pg_hba.conf"));
                let text = std::fs::read_to_string(&hba)
                    .map_err(|e| format!("cannot read {}: {e}", hba.display()))?;
                let trusted = trust_local_tcp(&text);
                if trusted != text {
                    std::fs::write(&hba, trusted)
                        .map_err(|e| format!("cannot write {}: {e}", hba.display()))?;
                }
                // `start` fails on a cluster that already runs: then it is reloaded instead.
                if run_quiet("pg_ctlcluster", &[version, name, "start"]).is_err() {
                    run_quiet("pg_ctlcluster", &[version, name, "reload"])?;
                }
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while !postgres_answers() {
                if std::time::Instant::now() > deadline {
                    return Err(format!(
                        "release check failed at: PostgreSQL started, but nothing answers at {POSTGRES_ADDR}"
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
        }
        // The database, when missing (an error that it exists is the expected case).
        let created = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-qc",
            ])
            .arg(format!("CREATE DATABASE {POSTGRES_DATABASE}"))
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        let stderr = String::from_utf8_lossy(&created.stderr);
        if !created.status.success() && !stderr.contains("already exists") {
            return Err(format!(
                "release check failed at: PostgreSQL answers at {POSTGRES_ADDR}, but database {POSTGRES_DATABASE} cannot be created as user postgres without a password: {}",
                stderr.trim()
            ));
        }
        eprintln!("{POSTGRES_URL_VAR}={POSTGRES_URL}");
        self.env
            .push((POSTGRES_URL_VAR.to_owned(), POSTGRES_URL.to_owned()));
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

/// Whether something accepts TCP connections at [`POSTGRES_ADDR`] (within a second).
fn postgres_answers() -> bool {
    POSTGRES_ADDR.parse().is_ok_and(|addr| {
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)).is_ok()
    })
}

/// Runs a setup command, its output shown only when it fails.
fn run_quiet(program: &str, args: &[&str]) -> Result<(), String> {
    eprintln!("   {program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "release check failed at: {program} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The clusters of Debian's PostgreSQL: `(version, name)` for each `/etc/postgresql/<v>/<name>`.
fn postgres_clusters() -> Result<Vec<(String, String)>, String> {
    let mut clusters = Vec::new();
    let root = Path::new("/etc/postgresql");
    let versions = match std::fs::read_dir(root) {
        Ok(versions) => versions,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(clusters),
        Err(e) => return Err(format!("cannot read {}: {e}", root.display())),
    };
    for version in versions.flatten() {
        let Ok(names) = std::fs::read_dir(version.path()) else {
            continue;
        };
        for name in names.flatten() {
            if name.path().join("pg_hba.conf").is_file() {
                clusters.push((
                    version.file_name().to_string_lossy().into_owned(),
                    name.file_name().to_string_lossy().into_owned(),
                ));
            }
        }
    }
    clusters.sort();
    Ok(clusters)
}

/// The newest PostgreSQL server installed from Debian's packages (`/usr/lib/postgresql/<major>`).
fn newest_postgres_version() -> Result<String, String> {
    let root = Path::new("/usr/lib/postgresql");
    let entries =
        std::fs::read_dir(root).map_err(|e| format!("cannot read {}: {e}", root.display()))?;
    entries
        .flatten()
        .filter(|e| e.path().join("bin/postgres").is_file())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .map(|v| v.to_string())
        .ok_or_else(|| {
            format!(
                "release check failed at: no PostgreSQL server in {}",
                root.display()
            )
        })
}

/// `pg_hba.conf` with loopback TCP trusted: [`TRUST_LOCAL_TCP`] first (the first matching line
/// wins), unless it is there already.
fn trust_local_tcp(hba: &str) -> String {
    if hba.starts_with(TRUST_LOCAL_TCP) {
        hba.to_owned()
    } else {
        format!("{TRUST_LOCAL_TCP}{hba}")
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
    fn loopback_tcp_is_trusted_first_and_only_once() {
        let debian = "local all postgres peer\nhost all all 127.0.0.1/32 scram-sha-256\n";
        let trusted = trust_local_tcp(debian);
        assert_eq!(
            trusted,
            format!("host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n{debian}")
        );
        assert_eq!(trust_local_tcp(&trusted), trusted);
    }

    /// The tests' PostgreSQL: the URL CI exports is the test kit's default, under the test
    /// kit's variable name.
    #[test]
    fn the_postgres_url_is_the_test_kits() {
        let testkit = include_str!("../../crates/agent-testkit/src/postgres.rs");
        assert!(testkit.contains(&format!("\"{POSTGRES_URL_VAR}\"")));
        assert!(testkit.contains(&format!("\"{POSTGRES_URL}\"")));
    }

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
