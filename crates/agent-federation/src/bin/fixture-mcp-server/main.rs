//! A scripted MCP server over stdio for agent-federation's integration tests (not shipped).
//!
//! Flags:
//! * `--label <text>`          prefix of `echo` results (to tell servers apart)
//! * `--spawn-log <path>`      appends one line per start (counts spawns)
//! * `--call-log <path>`       appends the tool name of every `tools/call`
//! * `--hang`                  never answers (sleeps before reading stdin)
//! * `--fail-if-exists <path>` exits 1 at start when the file exists, else creates it (a
//!   server that cannot be restarted)
//! * `--grandchild <path>`     starts `sleep 1000` (in the server's process group) and writes
//!   its PID to the file
//! * `--stderr-line <bytes>`   writes one stderr line of that many bytes before serving

#![allow(clippy::print_stdout)]

mod tools;

use std::io::Write;
use std::path::PathBuf;

use rmcp::ServiceExt;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut label = String::from("fixture");
    let mut spawn_log: Option<PathBuf> = None;
    let mut call_log: Option<PathBuf> = None;
    let mut hang = false;
    let mut fail_if_exists: Option<PathBuf> = None;
    let mut grandchild: Option<PathBuf> = None;
    let mut stderr_line: usize = 0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--label" => label = args.next().unwrap_or_default(),
            "--spawn-log" => spawn_log = args.next().map(PathBuf::from),
            "--call-log" => call_log = args.next().map(PathBuf::from),
            "--hang" => hang = true,
            "--fail-if-exists" => fail_if_exists = args.next().map(PathBuf::from),
            "--grandchild" => grandchild = args.next().map(PathBuf::from),
            "--stderr-line" => {
                stderr_line = args.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            }
            other => {
                eprintln!("fixture-mcp-server: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    if let Some(path) = &spawn_log {
        tools::append_line(path, &format!("spawn {}", std::process::id()));
    }
    if let Some(path) = fail_if_exists {
        if path.exists() {
            eprintln!(
                "fixture-mcp-server: {} exists; refusing to start",
                path.display()
            );
            std::process::exit(1);
        }
        if let Ok(mut f) = std::fs::File::create(&path) {
            let _ = writeln!(f, "started");
        }
    }
    if let Some(path) = grandchild {
        match std::process::Command::new("sleep")
            .arg("1000")
            .stdin(std::process::Stdio::null())
            .spawn()
        {
            Ok(child) => tools::append_line(&path, &child.id().to_string()),
            Err(e) => {
                eprintln!("fixture-mcp-server: cannot start sleep: {e}");
                std::process::exit(1);
            }
        }
    }
    if stderr_line > 0 {
        let mut stderr = std::io::stderr().lock();
        let block = [b'e'; 64 * 1024];
        let mut left = stderr_line;
        while left > 0 {
            let n = left.min(block.len());
            if stderr.write_all(&block[..n]).is_err() {
                break;
            }
            left -= n;
        }
        let _ = stderr.write_all(b"\n");
    }
    if hang {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        }
    }
    let server = tools::Fixture::new(label, call_log);
    match server.serve(rmcp::transport::stdio()).await {
        Ok(running) => {
            let _ = running.waiting().await;
        }
        Err(e) => {
            eprintln!("fixture-mcp-server: {e}");
            std::process::exit(1);
        }
    }
}
