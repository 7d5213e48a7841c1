//! One malloc arena for the server, unless the operator chose otherwise.
//!
//! glibc's allocator gives a thread that finds the arena it uses locked an arena of its own, up
//! to eight per core. A burst of concurrent runs spreads its short-lived allocations over the
//! runtime's workers and the blocking threads it starts, and each arena keeps its free memory
//! for its own threads: 50 concurrent runs peak 0.5–1 MB higher than with one arena shared by
//! all, for no throughput gain (`docs/performance.md`, "Performance devices").
//!
//! The limit can only be set before the allocator starts (`mallopt` needs `unsafe`, which the
//! workspace forbids), so the server executes its own file once more, in place (same pid,
//! arguments and open files; nothing has been read yet), with `MALLOC_ARENA_MAX=1` added to
//! its environment. A server started with `MALLOC_ARENA_MAX` set, or with
//! `glibc.malloc.arena_max` in `GLIBC_TUNABLES`, keeps what the operator chose. Where the
//! file cannot be executed again (no `/proc`, removed since, a sandbox that forbids `execve`),
//! the server goes on with glibc's default. The variable does not reach child processes: each
//! is started with a cleared environment.

use std::ffi::OsStr;

use agent_policy::config::libc_vars::{GLIBC_TUNABLES, MALLOC_ARENA_MAX, TUNABLE_ARENA_MAX};

/// Whether the server should execute itself again with one arena: not when the operator
/// set the limit either way.
fn wanted(arena_max: Option<&OsStr>, tunables: Option<&OsStr>) -> bool {
    arena_max.is_none()
        && !tunables.is_some_and(|t| {
            t.to_string_lossy()
                .split(':')
                .any(|entry| entry.split('=').next() == Some(TUNABLE_ARENA_MAX))
        })
}

/// Executes the running binary again with `MALLOC_ARENA_MAX=1` when [`wanted`]; returns only
/// when it does not (already limited, chosen by the operator, or the exec failed).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn limit_to_one() {
    use std::os::unix::process::CommandExt;

    if !wanted(
        std::env::var_os(MALLOC_ARENA_MAX).as_deref(),
        std::env::var_os(GLIBC_TUNABLES).as_deref(),
    ) {
        return;
    }
    // The file this process runs, by its path: the kernel names the new process after the
    // path's last component (`ps`, `pgrep`, the journal), so not `/proc/self/exe`, which
    // would rename it `exe`. Not when the file has since been removed or replaced (an
    // upgrade in place: the path would name another binary or none), nor when it is the
    // dynamic loader (`ld.so ./claude-agent-mcp`: executing the loader with the server's
    // arguments would start something else).
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let name = exe.file_name().map(|n| n.to_string_lossy().into_owned());
    if name.is_none_or(|n| n.starts_with("ld-") || n.ends_with(" (deleted)")) {
        return;
    }
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_default();
    // `exec` returns only on failure.
    let _failed = std::process::Command::new(exe)
        .arg0(arg0)
        .args(args)
        .env(MALLOC_ARENA_MAX, "1")
        .exec();
}

/// Elsewhere (macOS, musl) there is no glibc arena to limit.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn limit_to_one() {
    let _ = wanted;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_choice_is_kept() {
        let os = |s: &'static str| Some(OsStr::new(s));
        assert!(wanted(None, None));
        assert!(wanted(None, os("glibc.malloc.tcache_count=0")));
        assert!(wanted(None, os("glibc.malloc.arena_max_x=2")));
        assert!(!wanted(os("1"), None));
        assert!(!wanted(os("8"), None));
        assert!(!wanted(os(""), None));
        assert!(!wanted(None, os("glibc.malloc.arena_max=2")));
        assert!(!wanted(
            None,
            os("glibc.malloc.tcache_count=0:glibc.malloc.arena_max=4")
        ));
    }
}
