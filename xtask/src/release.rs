//! `cargo xtask release-check`: everything a release must pass, in one command: formatting,
//! lints, schema drift, the supply-chain checks, and the whole test suite (which includes the
//! configuration-docs drift test and, when the peers are installed, the real-CLI and
//! reference-server tests).

use std::path::Path;
use std::process::Command;

/// One step: a description and the command line.
struct Step {
    what: &'static str,
    program: &'static str,
    args: &'static [&'static str],
}

const STEPS: &[Step] = &[
    Step {
        what: "format",
        program: "cargo",
        args: &["fmt", "--all", "--", "--check"],
    },
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
        what: "schemas match the code",
        program: "cargo",
        args: &["xtask", "schema", "--check"],
    },
    Step {
        what: "licenses, bans and sources (cargo-deny)",
        program: "cargo",
        args: &["deny", "check", "licenses", "bans", "sources"],
    },
    Step {
        what: "tests (with the docs drift test)",
        program: "cargo",
        args: &["test", "--workspace", "--locked"],
    },
];

/// Runs every step from the workspace root, stopping at the first failure.
pub fn release_check(root: &Path) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    for step in STEPS {
        let program = if step.program == "cargo" {
            cargo.as_str()
        } else {
            step.program
        };
        eprintln!(
            "== {} ({} {})",
            step.what,
            step.program,
            step.args.join(" ")
        );
        let status = Command::new(program)
            .args(step.args)
            .current_dir(root)
            .status()
            .map_err(|e| format!("{}: cannot run {program}: {e}", step.what))?;
        if !status.success() {
            let hint = if step.args.first() == Some(&"deny") {
                " (install it with `cargo install --locked cargo-deny`)"
            } else {
                ""
            };
            return Err(format!("release check failed at: {}{hint}", step.what));
        }
    }
    eprintln!("release check passed");
    Ok(())
}
