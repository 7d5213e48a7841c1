//! One malloc arena for the server, unless the operator chose otherwise.
//!
//! glibc's allocator gives a thread that finds the arena it uses locked an arena of its own, up
//! to eight per core on 64-bit systems. A burst of concurrent runs spreads its short-lived
//! allocations over the runtime's workers and the blocking threads it starts, and each arena
//! keeps its free memory for its own threads: 50 concurrent runs peak about 0.9 MB higher than
//! with one arena shared by all, for no measurable throughput gain (`docs/performance.md`,
//! "Performance devices").
//!
//! The limit can only be set before the allocator starts (`mallopt` needs `unsafe`, which the
//! workspace forbids), so the server executes its own file once more, in place, with
//! `MALLOC_ARENA_MAX=1` appended to its environment: the same pid, name, arguments,
//! environment otherwise, open files, signal mask and dispositions; nothing has been read yet.
//! It does not when the operator set the limit (`MALLOC_ARENA_MAX`, or `glibc.malloc.arena_max`
//! in `GLIBC_TUNABLES`), nor when it cannot be sure the path leads to the running file or that
//! glibc would honour the variable ([`limit_to_one`]); a failed `execve` changes nothing and the
//! server goes on with glibc's default. The variable reaches no child process unless the
//! operator passes it on: each is started with a cleared environment.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

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

/// The path to execute again: the one the server was started by (`argv[0]`, looked up in
/// `search`, the `PATH`, when it has no `/`), so that the process keeps its name, which the
/// kernel takes from the path's last component (`ps`, `pgrep`, the journal); else the running
/// file's own path (`exe`; `/proc/self/exe` itself would rename the process `exe`). Only a
/// path that leads to the running file (`is_running`), and never a dynamic loader's.
fn path_to_run(
    arg0: &OsStr,
    search: Option<&OsStr>,
    exe: Option<PathBuf>,
    is_running: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    let started: Vec<PathBuf> = if arg0.to_string_lossy().contains('/') {
        vec![PathBuf::from(arg0)]
    } else if arg0.is_empty() {
        Vec::new()
    } else {
        std::env::split_paths(search.unwrap_or_default())
            .map(|dir| dir.join(arg0))
            .collect()
    };
    started
        .into_iter()
        .chain(exe)
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| !is_loader(&name.to_string_lossy()))
        })
        .find(|path| is_running(path))
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
/// * no path leads to the running file ([`path_to_run`]: no `/proc`, the file removed or
///   replaced since it was started, started through the dynamic loader). A file replaced in
///   the microseconds between that check and the `execve` would be executed instead: whoever
///   can replace it can replace the binary anyway;
/// * `execve` fails (a sandbox, a security module): `nix`'s `execve` changes nothing before
///   it, unlike `std`'s `Command::exec`, which resets signal dispositions first.
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
    // `/proc/self/exe` leads to the running file even when its path no longer does.
    let identity = |m: std::fs::Metadata| (m.dev(), m.ino());
    let Ok(running) = std::fs::metadata("/proc/self/exe").map(identity) else {
        return;
    };
    let args: Vec<_> = std::env::args_os().collect();
    let Some(path) = path_to_run(
        args.first().map(|a| a.as_os_str()).unwrap_or_default(),
        std::env::var_os("PATH").as_deref(),
        std::env::current_exe().ok(),
        |path| std::fs::metadata(path).map(identity).ok() == Some(running),
    ) else {
        return;
    };
    // The environment exactly as this process received it (each entry ends in a NUL), with
    // the limit appended; `wanted` saw no `MALLOC_ARENA_MAX` in it.
    let Ok(environ) = std::fs::read("/proc/self/environ") else {
        return;
    };
    let entries: Vec<&[u8]> = environ
        .strip_suffix(&[0])
        .map(|all| all.split(|b| *b == 0).collect())
        .unwrap_or_default();
    let limit = format!("{MALLOC_ARENA_MAX}=1");
    let c_string = |bytes: &[u8]| CString::new(bytes).ok();
    let env: Option<Vec<CString>> = entries
        .into_iter()
        .chain([limit.as_bytes()])
        .map(c_string)
        .collect();
    let args: Option<Vec<CString>> = args.iter().map(|arg| c_string(arg.as_bytes())).collect();
    let (Some(path), Some(args), Some(env)) = (c_string(path.as_os_str().as_bytes()), args, env)
    else {
        return;
    };
    // Returns only on failure, with nothing changed.
    let _failed = nix::unistd::execve(&path, &args, &env);
}

/// Elsewhere (macOS, musl) there is no glibc arena to limit.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn limit_to_one() {
    let _ = (wanted, path_to_run, secure_mode);
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
    fn the_path_the_server_was_started_by_is_executed_if_it_leads_to_the_running_file() {
        let running = |file: &'static str| move |path: &Path| path == Path::new(file);
        let os = |s: &'static str| OsStr::new(s);
        let exe = || Some(PathBuf::from("/opt/cam/claude-agent-mcp"));
        let search = Some(os("/usr/bin:/usr/local/bin"));
        // A symlink by another name keeps that name.
        assert_eq!(
            path_to_run(
                os("/usr/local/bin/cam"),
                search,
                exe(),
                running("/usr/local/bin/cam")
            ),
            Some("/usr/local/bin/cam".into())
        );
        assert_eq!(
            path_to_run(os("./cam"), search, exe(), running("./cam")),
            Some("./cam".into())
        );
        // A bare name is looked up in `PATH`, as the shell did.
        assert_eq!(
            path_to_run(os("cam"), search, exe(), running("/usr/local/bin/cam")),
            Some("/usr/local/bin/cam".into())
        );
        // A name that leads elsewhere (a client's made-up `argv[0]`), an empty one, none in
        // `PATH`: the running file's own path.
        for (arg0, search) in [
            ("/usr/bin/something-else", search),
            ("", search),
            ("cam", None),
        ] {
            assert_eq!(
                path_to_run(
                    os(arg0),
                    search,
                    exe(),
                    running("/opt/cam/claude-agent-mcp")
                ),
                exe(),
                "{arg0:?}"
            );
        }
        // Nothing leads to the running file, or only the loader's path does.
        assert_eq!(path_to_run(os("cam"), search, exe(), |_| false), None);
        let loader = Some(PathBuf::from("/lib64/ld-linux-x86-64.so.2"));
        assert_eq!(
            path_to_run(
                os("./cam"),
                search,
                loader,
                running("/lib64/ld-linux-x86-64.so.2")
            ),
            None
        );
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
