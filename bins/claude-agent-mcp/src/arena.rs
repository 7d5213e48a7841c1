//! One malloc arena for the server, unless the operator chose otherwise.
//!
//! glibc's allocator gives a thread that finds the arena it uses locked an arena of its own, up
//! to eight per core. A burst of concurrent runs spreads its short-lived allocations over the
//! runtime's workers and the blocking threads it starts, and each arena keeps its free memory
//! for its own threads: 50 concurrent runs peak about 0.9 MB higher than with one arena shared
//! by all, for no measurable throughput gain (`docs/performance.md`, "Performance devices").
//!
//! The limit can only be set before the allocator starts (`mallopt` needs `unsafe`, which the
//! workspace forbids), so the server executes its own file once more, in place, with
//! `MALLOC_ARENA_MAX=1` appended to its environment: the same pid, arguments, environment
//! otherwise, open files, signal mask and dispositions; nothing has been read yet. It does not
//! when the operator set the limit (`MALLOC_ARENA_MAX`, or `glibc.malloc.arena_max` in
//! `GLIBC_TUNABLES`), nor when it cannot be sure the file is the one running or that glibc
//! would honour the variable ([`limit_to_one`]); a failed `execve` changes nothing and the
//! server goes on with glibc's default. The variable reaches no child process unless the
//! operator passes it through: each is started with a cleared environment.

use std::ffi::OsStr;

use agent_policy::config::libc_vars::TUNABLE_ARENA_MAX;

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

/// Whether a file of this name is a dynamic loader (`ld-linux-x86-64.so.2`, `ld64.so.2`,
/// `ld.so`): a server started as `ld.so ./claude-agent-mcp` runs the loader's file.
fn is_loader(name: &str) -> bool {
    name.starts_with("ld") && name.contains(".so")
}

/// `AT_SECURE` from the auxiliary vector (`/proc/self/auxv`: native-endian word pairs, ended
/// by `AT_NULL`); `None` if it cannot be read.
fn secure_mode(auxv: &[u8]) -> Option<bool> {
    const AT_NULL: usize = 0;
    const AT_SECURE: usize = 23;
    const WORD: usize = std::mem::size_of::<usize>();
    let word = |chunk: &[u8]| chunk.try_into().ok().map(usize::from_ne_bytes);
    for pair in auxv.chunks_exact(2 * WORD) {
        match word(&pair[..WORD])? {
            AT_NULL => return None,
            AT_SECURE => return Some(word(&pair[WORD..])? != 0),
            _ => {}
        }
    }
    None
}

/// Executes the running binary again with `MALLOC_ARENA_MAX=1` when [`wanted`]; returns when
/// it does not. Not when:
/// * the process runs in secure mode (setuid, file capabilities: `AT_SECURE`), where glibc
///   removes the variable, so that each new image would execute the next one;
/// * the running file cannot be named by a path that still leads to it (no `/proc`, the file
///   removed or replaced since it was started, a path now naming another file) or is the
///   dynamic loader's ([`is_loader`]);
/// * `execve` fails (a sandbox, a security module): `nix`'s `execve` changes nothing before
///   it, unlike `std`'s `Command::exec`, which resets signal dispositions first.
///
/// The path is the file's (`std::env::current_exe`), not `/proc/self/exe`: the kernel names
/// the new process after the path's last component (`ps`, `pgrep`, the journal), and
/// `/proc/self/exe` would rename it `exe`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn limit_to_one() {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;

    use agent_policy::config::libc_vars::{GLIBC_TUNABLES, MALLOC_ARENA_MAX};

    if !wanted(
        std::env::var_os(MALLOC_ARENA_MAX).as_deref(),
        std::env::var_os(GLIBC_TUNABLES).as_deref(),
    ) {
        return;
    }
    let auxv = std::fs::read("/proc/self/auxv").unwrap_or_default();
    if secure_mode(&auxv) != Some(false) {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    if exe
        .file_name()
        .is_none_or(|name| is_loader(&name.to_string_lossy()))
    {
        return;
    }
    // The path must still lead to the running file (a removed one reads `… (deleted)`).
    let identity = |m: std::fs::Metadata| (m.dev(), m.ino());
    let running = std::fs::metadata("/proc/self/exe").map(identity);
    if running.is_err() || running.ok() != std::fs::metadata(&exe).map(identity).ok() {
        return;
    }
    // The environment exactly as this process received it (order, duplicates and all), with
    // the limit appended; `wanted` saw no `MALLOC_ARENA_MAX` in it.
    let Ok(environ) = std::fs::read("/proc/self/environ") else {
        return;
    };
    let c_string = |bytes: &[u8]| CString::new(bytes).ok();
    let env: Option<Vec<CString>> = environ
        .split(|b| *b == 0)
        .filter(|entry| !entry.is_empty())
        .map(c_string)
        .chain(std::iter::once(c_string(
            format!("{MALLOC_ARENA_MAX}=1").as_bytes(),
        )))
        .collect();
    let args: Option<Vec<CString>> = std::env::args_os()
        .map(|arg| c_string(arg.as_bytes()))
        .collect();
    let (Some(path), Some(args), Some(env)) = (c_string(exe.as_os_str().as_bytes()), args, env)
    else {
        return;
    };
    // Returns only on failure, with nothing changed.
    let _failed = nix::unistd::execve(&path, &args, &env);
}

/// Elsewhere (macOS, musl) there is no glibc arena to limit.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn limit_to_one() {
    let _ = (wanted, is_loader, secure_mode);
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

    #[test]
    fn loaders_are_recognised_by_name() {
        for loader in ["ld-linux-x86-64.so.2", "ld64.so.2", "ld64.so.1", "ld.so"] {
            assert!(is_loader(loader), "{loader}");
        }
        for server in ["claude-agent-mcp", "ld", "ldap-agent", "cam"] {
            assert!(!is_loader(server), "{server}");
        }
    }

    #[test]
    fn secure_mode_is_read_from_the_auxiliary_vector() {
        let vector = |pairs: &[(usize, usize)]| -> Vec<u8> {
            pairs
                .iter()
                .flat_map(|(k, v)| [k.to_ne_bytes(), v.to_ne_bytes()])
                .flatten()
                .collect()
        };
        assert_eq!(
            secure_mode(&vector(&[(6, 4096), (23, 0), (0, 0)])),
            Some(false)
        );
        assert_eq!(
            secure_mode(&vector(&[(6, 4096), (23, 1), (0, 0)])),
            Some(true)
        );
        // Ended before AT_SECURE, cut short, or empty (unreadable): unknown.
        assert_eq!(secure_mode(&vector(&[(6, 4096), (0, 0), (23, 0)])), None);
        assert_eq!(secure_mode(&vector(&[(6, 4096)])), None);
        assert_eq!(secure_mode(&[]), None);
        // This process is not in secure mode.
        let own = std::fs::read("/proc/self/auxv").unwrap_or_default();
        if cfg!(target_os = "linux") {
            assert_eq!(secure_mode(&own), Some(false));
        }
    }
}
