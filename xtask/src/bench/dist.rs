//! `cargo xtask dist`: builds the server the way it is deployed and measured, copies it to
//! `target/dist/claude-agent-mcp`, and checks it.
//!
//! On an `x86_64-unknown-linux-gnu` host the release server links glibc statically
//! (`-C target-feature=+crt-static`, a static PIE): no shared libc, libm, libgcc_s or dynamic
//! loader is mapped at run time, and the recorded code layout (`link-order.txt`) places the
//! libc functions that requests run next to the server's own. With the layout that is 3 MB
//! less file-backed memory at the benchmark's peak (`docs/performance.md`, "Performance
//! devices"). `crt-static` is a target feature, so it reaches rustc only through `RUSTFLAGS`,
//! and cargo applies `RUSTFLAGS` to proc-macros as well unless a `--target` is named: the
//! build therefore names the host triple, and the binary lands under
//! `target/x86_64-unknown-linux-gnu/release/`. `CLAUDE_AGENT_MCP_STATIC=off` builds the
//! dynamically linked server instead (for a machine whose glibc differs from the building
//! one's, `docs/deployment.md`); every other host gets a plain `cargo build --release`.
//!
//! The checks: a static build must have no program interpreter (checked whenever it is built,
//! so the benchmark never measures a build that came out dynamic), and `dist` runs the result:
//! it must answer `--version` and complete an `agent_run_task` over stdio against the
//! benchmark's Messages API stand-in addressed as `localhost`, a name the C library's resolver
//! answers from `/etc/hosts` (its `files` source; no test may reach a DNS server).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::server::Workspace;
use super::standin::StandIn;
use super::{check_completed, progress, task_args, workspace_root};

/// Where `cargo xtask dist` puts the server.
pub const DIST_BINARY: &str = "target/dist/claude-agent-mcp";
/// The host whose builds link glibc statically.
const STATIC_HOST: &str = "x86_64-unknown-linux-gnu";
/// `off` (or `0`, `false`) builds the dynamically linked server on that host too.
const STATIC_SWITCH: &str = "CLAUDE_AGENT_MCP_STATIC";
const SERVER_PACKAGE: &str = "claude-agent-mcp";

/// Entry point of `cargo xtask dist`.
pub fn dist(args: &[String]) -> Result<(), String> {
    if !args.is_empty() {
        return Err("usage: cargo xtask dist".to_owned());
    }
    let linked_static = static_glibc()?;
    let target = build(linked_static)?;
    check(&target, linked_static)?;
    let _ = writeln!(std::io::stdout(), "{}", target.display());
    Ok(())
}

/// Builds the release server as `dist` does (the benchmark and `link-order` measure this
/// build), checks that a static build is static, copies it to [`DIST_BINARY`] and returns that
/// path.
pub(super) fn build_server() -> Result<PathBuf, String> {
    build(static_glibc()?)
}

/// [`build_server`] with the linkage decided.
fn build(linked_static: bool) -> Result<PathBuf, String> {
    let built = if linked_static {
        let built = super::cargo_build_release(
            SERVER_PACKAGE,
            SERVER_PACKAGE,
            &["--target", STATIC_HOST],
            &static_rustflags(),
        )?;
        // Cargo prefers `CARGO_ENCODED_RUSTFLAGS` and a configured `rustflags` can be
        // overridden: a build that came out dynamic is refused, not measured.
        if has_interpreter(&built)? {
            return Err(format!(
                "{} names a program interpreter: it is not statically linked",
                built.display()
            ));
        }
        built
    } else {
        super::cargo_build_release(SERVER_PACKAGE, SERVER_PACKAGE, &[], &[])?
    };
    let target = workspace_root().join(DIST_BINARY);
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::copy(&built, &target).map_err(|e| {
        format!(
            "cannot copy {} to {}: {e}",
            built.display(),
            target.display()
        )
    })?;
    Ok(target)
}

/// The environment that adds `crt-static` to the flags the build would use anyway: appended to
/// `CARGO_ENCODED_RUSTFLAGS` when that is set (cargo then ignores `RUSTFLAGS`), else to
/// `RUSTFLAGS`.
fn static_rustflags() -> Vec<(&'static str, String)> {
    const FLAG: &str = "-Ctarget-feature=+crt-static";
    match std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        Ok(encoded) if !encoded.is_empty() => {
            vec![("CARGO_ENCODED_RUSTFLAGS", format!("{encoded}\x1f{FLAG}"))]
        }
        _ => {
            let flags = std::env::var("RUSTFLAGS").unwrap_or_default();
            vec![("RUSTFLAGS", format!("{flags} {FLAG}").trim().to_owned())]
        }
    }
}

/// Whether this host's release server links glibc statically.
fn static_glibc() -> Result<bool, String> {
    let off = matches!(
        std::env::var(STATIC_SWITCH).as_deref(),
        Ok("off" | "0" | "false")
    );
    Ok(!off && host_triple()? == STATIC_HOST)
}

/// `rustc -vV`'s `host:` line.
fn host_triple() -> Result<String, String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let output = Command::new(&rustc)
        .arg("-vV")
        .output()
        .map_err(|e| format!("cannot run {rustc}: {e}"))?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .ok_or_else(|| format!("{rustc} -vV names no host"))
}

/// The built server (its linkage was checked by [`build_server`]) answers `--version` and runs
/// a task through a host name.
fn check(bin: &Path, static_glibc: bool) -> Result<(), String> {
    let version = Command::new(bin)
        .arg("--version")
        .env_clear()
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let expected = format!("claude-agent-mcp {}", env!("CARGO_PKG_VERSION"));
    let said = String::from_utf8_lossy(&version.stdout);
    if !version.status.success() || said.trim() != expected {
        return Err(format!(
            "{} --version said {said:?}, not {expected:?}",
            bin.display()
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime
        .block_on(run_task_through_localhost(bin))
        .map_err(|e| format!("{} did not run a task: {e}", bin.display()))?;
    progress(&format!(
        "{}: {}, --version and a task through `localhost` answered",
        bin.display(),
        if static_glibc {
            "statically linked"
        } else {
            "dynamically linked"
        }
    ));
    Ok(())
}

async fn run_task_through_localhost(bin: &Path) -> super::Result<()> {
    let standin = StandIn::start(Duration::ZERO).await?;
    let api = standin.base_url().replace("127.0.0.1", "localhost");
    let ws = Workspace::new(None)?;
    let (server, _) = ws.start_stdio(bin, &api).await?;
    let result = server.call("agent_run_task", task_args()).await;
    server.stop().await;
    check_completed(&result?)
}

/// Whether the ELF file at `bin` has a `PT_INTERP` program header (a dynamically linked
/// executable names its loader there; a static PIE does not).
fn has_interpreter(bin: &Path) -> Result<bool, String> {
    use std::io::Read;
    const PT_INTERP: u32 = 3;
    // The ELF header and the program header table come first; the rest is not read.
    const HEADERS: u64 = 64 * 1024;
    let mut bytes = Vec::new();
    std::fs::File::open(bin)
        .and_then(|file| file.take(HEADERS).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {}: {e}", bin.display()))?;
    let field = |at: usize, len: usize| -> Result<u64, String> {
        let slice = at
            .checked_add(len)
            .and_then(|end| bytes.get(at..end))
            .ok_or_else(|| {
                format!(
                    "{} is too short for its ELF headers (read up to {HEADERS} bytes)",
                    bin.display()
                )
            })?;
        Ok(slice
            .iter()
            .rev()
            .fold(0u64, |value, byte| (value << 8) | u64::from(*byte)))
    };
    // 64-bit little-endian ELF only: the static build exists for x86_64 alone.
    if bytes.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return Err(format!(
            "{} is not a 64-bit little-endian ELF file",
            bin.display()
        ));
    }
    let to_usize = |v: u64| usize::try_from(v).map_err(|e| e.to_string());
    let table = to_usize(field(0x20, 8)?)?;
    let entry_size = to_usize(field(0x36, 2)?)?;
    let entries = to_usize(field(0x38, 2)?)?;
    for i in 0..entries {
        let at = i
            .checked_mul(entry_size)
            .and_then(|offset| offset.checked_add(table))
            .ok_or_else(|| format!("{} has a program header out of range", bin.display()))?;
        if field(at, 4)? == u64::from(PT_INTERP) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The release link applies the recorded layout on one host triple (`build.rs`) and this
    /// module records it on one (`STATIC_HOST`): they must be the same.
    #[test]
    fn the_layout_is_applied_on_the_host_it_is_recorded_for() {
        let build = workspace_root().join("bins/claude-agent-mcp/build.rs");
        let text = std::fs::read_to_string(&build).expect("build.rs is readable");
        let applied_on = format!("var(\"TARGET\") == \"{STATIC_HOST}\"");
        assert!(
            text.contains(&applied_on),
            "{} does not apply the layout on {STATIC_HOST}",
            build.display()
        );
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_dynamically_linked_executable_names_its_interpreter() {
        // The test binary is linked like every debug build: against the shared C library.
        let this = std::env::current_exe().expect("the test binary's path");
        assert!(has_interpreter(&this).expect("an ELF file"));
    }

    #[test]
    fn a_static_pie_names_none_and_a_non_elf_file_is_an_error() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        // A 64-bit ELF header whose one program header is PT_LOAD (1), not PT_INTERP (3).
        let mut elf = vec![0u8; 0x40 + 0x38];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20] = 0x40; // e_phoff
        elf[0x36] = 0x38; // e_phentsize
        elf[0x38] = 1; // e_phnum
        elf[0x40] = 1; // p_type = PT_LOAD
        let path = dir.path().join("static");
        std::fs::write(&path, &elf).expect("written");
        assert!(!has_interpreter(&path).expect("an ELF file"));
        elf[0x40] = 3; // p_type = PT_INTERP
        std::fs::write(&path, &elf).expect("written");
        assert!(has_interpreter(&path).expect("an ELF file"));

        let text = dir.path().join("script");
        std::fs::write(&text, "#!/bin/sh\n").expect("written");
        assert!(has_interpreter(&text).is_err());
        // A truncated header is an error, not a panic.
        std::fs::write(&path, &elf[..0x30]).expect("written");
        assert!(has_interpreter(&path).is_err());
        // A program header table at the end of the address space is an error, not an overflow.
        let mut far = elf.clone();
        far[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&path, &far).expect("written");
        assert!(has_interpreter(&path).is_err());
    }
}
