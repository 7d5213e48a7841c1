//! `cargo xtask link-order`: records which functions of the release server run in the
//! benchmark's workloads and writes them, in first-use order, to
//! `bins/claude-agent-mcp/link-order.txt`. The release link (`bins/claude-agent-mcp/build.rs`)
//! hands that file to lld as `--symbol-ordering-file`, which packs the code that actually runs
//! into one contiguous stretch of `.text` instead of leaving it spread over 18 MB. The kernel
//! maps a binary's code in large blocks (64 KiB fault-around, larger page-cache folios on
//! ext4 and xfs), so scattered hot code keeps most of the file resident; packed, it does not.
//! See `docs/performance.md`.
//!
//! How: the release binary is run under valgrind's callgrind (through a wrapper script, so the
//! benchmark drives it exactly as it drives the real one), the executed function names are
//! read back from callgrind's dumps, and only names that `nm` finds defined in the binary are
//! kept. Needs `valgrind` (with `callgrind_control`) and `nm` on `PATH`. Stale entries are
//! harmless (lld skips names it cannot find); run it again after dependency upgrades.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use super::server::Workspace;
use super::standin::StandIn;
use super::{Options, Result, check_completed, dist, progress, task_args};

/// Where the release link looks for the list (see `bins/claude-agent-mcp/build.rs`).
const ORDER_FILE: &str = "bins/claude-agent-mcp/link-order.txt";

/// Entry point of `cargo xtask link-order`.
pub fn link_order(args: &[String]) -> Result<(), String> {
    if !args.is_empty() {
        return Err("usage: cargo xtask link-order".to_owned());
    }
    for tool in ["valgrind", "callgrind_control", "nm"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Err(format!("link-order needs `{tool}` on PATH"));
        }
    }
    let root = super::workspace_root();
    let bin = dist::build_server()?;
    let defined = defined_functions(&bin)?;
    if defined.is_empty() {
        return Err(format!(
            "{} has no symbol table: the release profile must keep symbols (strip = \"debuginfo\")",
            bin.display()
        ));
    }
    let dir = tempfile::Builder::new()
        .prefix("claude-agent-mcp-link-order-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let wrapper = write_wrapper(dir.path(), &bin)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let workload = runtime.block_on(record(&wrapper));
    // The HTTP phase's server is killed through its wrapper; valgrind lives on. SIGTERM lets
    // the server shut down, and callgrind write its last dump.
    stop_recorders(dir.path());
    workload.map_err(|e| format!("the recorded workload failed: {e}"))?;
    let names = executed_functions(dir.path())?;
    let ordered: Vec<&String> = names.iter().filter(|n| defined.contains(*n)).collect();
    if ordered.is_empty() {
        return Err("callgrind recorded no function of the server binary".to_owned());
    }
    let mut text = String::with_capacity(ordered.iter().map(|n| n.len() + 1).sum());
    for name in &ordered {
        text.push_str(name);
        text.push('\n');
    }
    let path = root.join(ORDER_FILE);
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    progress(&format!(
        "wrote {} functions ({} executed names) to {ORDER_FILE}; rebuilding with it",
        ordered.len(),
        names.len()
    ));
    let rebuilt = dist::build_server()?;
    let now_defined = defined_functions(&rebuilt)?;
    let found = ordered.iter().filter(|n| now_defined.contains(**n)).count();
    let _ = writeln!(
        std::io::stdout(),
        "link-order: {} of {} listed functions are in the rebuilt binary",
        found,
        ordered.len()
    );
    Ok(())
}

/// A script that runs the server under callgrind with stdin passed through, dumps every second
/// (the HTTP server never exits on its own) and records valgrind's pid for [`stop_recorders`].
/// The server logs at `INFO`, the default, so that the logging code users run is recorded
/// too (the benchmark itself runs the server at `ERROR`). It starts with one malloc arena
/// already set, as it runs after its own re-execution (`bins/claude-agent-mcp/src/arena.rs`):
/// otherwise it would execute itself again outside valgrind (which does not follow an
/// `execve` by default), and callgrind would record only its first milliseconds.
fn write_wrapper(dir: &Path, bin: &Path) -> Result<PathBuf, String> {
    let out = dir.join("callgrind.out.%p");
    let script = format!(
        "#!/bin/sh\n\
         {level}=INFO; export {level}\n\
         {arenas}=1; export {arenas}\n\
         exec 3<&0\n\
         valgrind --tool=callgrind --demangle=no --dump-instr=no --callgrind-out-file='{out}' \
         '{bin}' \"$@\" 0<&3 2>>'{log}' &\n\
         VP=$!\n\
         exec 3<&-\n\
         echo $VP >> '{pids}'\n\
         ( sleep 1; while kill -0 $VP 2>/dev/null; do callgrind_control -d $VP; sleep 1; done ) \
         </dev/null >/dev/null 2>&1 &\n\
         wait $VP\n",
        level = agent_policy::config::vars::LOG_LEVEL,
        arenas = agent_policy::config::libc_vars::MALLOC_ARENA_MAX,
        out = out.display(),
        bin = bin.display(),
        log = dir.join("valgrind.log").display(),
        pids = dir.join("pids").display(),
    );
    let path = dir.join("server.sh");
    std::fs::write(&path, script).map_err(|e| format!("cannot write the wrapper: {e}"))?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| format!("cannot make the wrapper executable: {e}"))?;
    Ok(path)
}

/// The benchmark's phases at small sizes, then every other tool once: what a client's
/// day with the server runs, over stdio and streamable HTTP.
async fn record(wrapper: &Path) -> Result<()> {
    let options = Options {
        skip_build: true,
        bin: Some(wrapper.to_path_buf()),
        starts: 1,
        iterations: 30,
        sessions: 500,
        rounds: 1,
        // Under callgrind every node is about fifty times slower: a small fleet runs the same
        // code.
        fleet_sessions: 60,
        fleet_clients: 6,
        ..Options::default()
    };
    super::measure(wrapper, &options).await?;
    progress("[5/5] continue, verify, status, list and cancel over stdio");
    let api = StandIn::start(Duration::ZERO).await?;
    let ws = Workspace::new(None)?;
    let (server, _) = ws.start_stdio(wrapper, &api.base_url()).await?;
    let first = server.call("agent_run_task", task_args()).await?;
    check_completed(&first)?;
    let session_id = first["session_id"].clone();
    let next = server
        .call(
            "agent_continue_session",
            json!({"session_id": session_id, "message": "And then?"}),
        )
        .await?;
    check_completed(&next)?;
    server
        .call(
            "agent_verify_task",
            json!({"task": "The summary is correct."}),
        )
        .await?;
    server.call("agent_get_runtime_status", json!({})).await?;
    server
        .call("agent_list_sessions", json!({"status": "completed"}))
        .await?;
    server
        .call("agent_cancel_session", json!({"session_id": session_id}))
        .await?;
    server.stop().await;
    Ok(())
}

fn stop_recorders(dir: &Path) {
    let pids = std::fs::read_to_string(dir.join("pids")).unwrap_or_default();
    for pid in pids.split_whitespace() {
        let _ = Command::new("kill")
            .args(["-TERM", pid])
            .stderr(std::process::Stdio::null())
            .status();
    }
    for pid in pids.split_whitespace() {
        for _ in 0..100 {
            let alive = Command::new("kill")
                .args(["-0", pid])
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !alive {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Function symbols defined in `bin` (`nm --defined-only`, text and weak symbols).
fn defined_functions(bin: &Path) -> Result<HashSet<String>, String> {
    let output = Command::new("nm")
        .arg("--defined-only")
        .arg(bin)
        .output()
        .map_err(|e| format!("cannot run nm: {e}"))?;
    if !output.status.success() {
        return Ok(HashSet::new());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (_address, kind, name) = (parts.next()?, parts.next()?, parts.next()?);
            matches!(kind, "t" | "T" | "w" | "W").then(|| name.to_owned())
        })
        .collect())
}

/// Every function name in the callgrind dumps, once, in the order the dumps were written and,
/// within a dump, in callgrind's order of first mention.
fn executed_functions(dir: &Path) -> Result<Vec<String>, String> {
    let mut dumps: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok())
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("callgrind.out.")
        })
        .filter_map(|entry| {
            let modified = entry.metadata().ok()?.modified().ok()?;
            Some((modified, entry.path()))
        })
        .collect();
    dumps.sort();
    let mut seen = HashSet::new();
    let mut names = Vec::new();
    for (_, path) in dumps {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for name in text.lines().filter_map(function_name) {
            if seen.insert(name.to_owned()) {
                names.push(name.to_owned());
            }
        }
    }
    Ok(names)
}

/// The name in a callgrind `fn=(id) name` or `cfn=(id) name` line, without the `'2`
/// recursion-level suffix that callgrind adds.
fn function_name(line: &str) -> Option<&str> {
    let rest = line
        .strip_prefix("fn=(")
        .or_else(|| line.strip_prefix("cfn=("))?;
    let (_, name) = rest.split_once(") ")?;
    let name = name.trim();
    let name = match name.rsplit_once('\'') {
        Some((base, level)) if level.chars().all(|c| c.is_ascii_digit()) => base,
        _ => name,
    };
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::function_name;

    #[test]
    fn callgrind_lines_give_function_names() {
        assert_eq!(
            function_name("fn=(12) _ZN4core3fmt5write17h0E"),
            Some("_ZN4core3fmt5write17h0E")
        );
        assert_eq!(function_name("cfn=(3) main'2"), Some("main"));
        assert_eq!(function_name("fn=(12)"), None);
        assert_eq!(function_name("calls=1 0"), None);
        assert_eq!(function_name("fn=(7) a'b"), Some("a'b"));
    }
}
