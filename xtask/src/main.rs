//! `cargo xtask schema [--check]`: writes (or checks) `docs/schemas/<tool>.input.json` and
//! `<tool>.output.json` for every published tool, from the same definitions the server uses.
//!
//! `cargo xtask release-check`: CI's one definition (`.ci/run` runs it): format, the real peers
//! installed and required, lints, schema drift, cargo-deny, the MCP conformance suite and every
//! test.
//!
//! `cargo xtask bench`: builds the server in release mode and measures start-up, round trips,
//! a large session listing and concurrent runs against a local stand-in for the Messages API
//! (see `docs/performance.md`).
//!
//! `cargo xtask link-order`: records the functions the release server runs in the benchmark's
//! workloads and writes `bins/claude-agent-mcp/link-order.txt`, the code layout of the release
//! link (see `docs/performance.md`).
//!
//! `cargo xtask dist`: builds the server as it is deployed and measured (glibc linked
//! statically on x86_64 Linux), copies it to `target/dist/claude-agent-mcp` and checks it (see
//! `docs/deployment.md`).

mod bench;
mod release;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agent_mcp::ToolName;

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schemas")
}

/// Every schema file: (file name, pretty JSON with a trailing newline).
fn rendered() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for tool in ToolName::ALL {
        for (kind, schema) in [
            ("input", tool.input_schema()),
            ("output", tool.output_schema()),
        ] {
            let text = serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n";
            files.push((format!("{}.{kind}.json", tool.as_str()), text));
        }
    }
    files
}

fn schema(check: bool) -> Result<(), String> {
    let dir = schema_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut drifted = Vec::new();
    for (name, text) in rendered() {
        let path = dir.join(&name);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                drifted.push(name);
            }
        } else {
            std::fs::write(&path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
    }
    if drifted.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "schemas drifted from the code: {} (run `cargo xtask schema`)",
            drifted.join(", ")
        ))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("schema") => schema(args.iter().any(|a| a == "--check")),
        Some("bench") => bench::bench(&args[1..]),
        Some("link-order") => bench::order::link_order(&args[1..]),
        Some("dist") => bench::dist::dist(&args[1..]),
        Some("release-check") => release::release_check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("..")),
        Some("ensure-postgres") => release::ensure_postgres(&Path::new(env!("CARGO_MANIFEST_DIR")).join("..")),
        _ => Err("usage: cargo xtask schema [--check] | cargo xtask bench [--help] | cargo xtask link-order | cargo xtask dist | cargo xtask release-check | cargo xtask ensure-postgres"
            .to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "{message}");
            ExitCode::FAILURE
        }
    }
}
