//! Release builds on x86_64 Linux lay out the server's code in the order of
//! `link-order.txt` (written by `cargo xtask link-order`): the functions that serve requests
//! end up next to each other, so far fewer pages of the binary become resident
//! (`docs/performance.md`). The layout changes nothing else; names that no longer exist are
//! skipped by the linker. The list is recorded from the build `cargo xtask dist` makes (glibc
//! linked statically, `xtask/src/bench/dist.rs`): symbol names differ between the static and
//! the dynamic linkage, so a plain `cargo build --release` finds few of its names.
//!
//! When the building machine's glibc is 2.36 or newer, release builds also pack their
//! relative relocations (`-z pack-relative-relocs`, DT_RELR): the 660 KB relocation table that
//! the dynamic loader reads at every start shrinks to a few KB. Such a binary needs glibc 2.36
//! at run time (it is built for the machine that builds it); set
//! `CLAUDE_AGENT_MCP_PACK_RELOCS=off` to build one for older systems.
//!
//! Both are applied only where the linker is known to be lld, which rustc uses by default for
//! `x86_64-unknown-linux-gnu` since 1.90, and skipped when a linker is chosen explicitly;
//! `CLAUDE_AGENT_MCP_LINK_ORDER=off` turns off the code layout.

// A build script talks to cargo through stdout.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=link-order.txt");
    println!("cargo::rerun-if-env-changed=CLAUDE_AGENT_MCP_LINK_ORDER");
    println!("cargo::rerun-if-env-changed=CLAUDE_AGENT_MCP_PACK_RELOCS");
    println!("cargo::rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let off = |name: &str| matches!(var(name).as_str(), "off" | "0" | "false");
    let release = var("PROFILE") == "release";
    let target = var("TARGET") == "x86_64-unknown-linux-gnu" && var("HOST") == var("TARGET");
    let custom_linker = !var("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_empty()
        || var("CARGO_ENCODED_RUSTFLAGS")
            .split('\x1f')
            .any(|flag| flag.contains("linker") || flag.contains("fuse-ld"));
    if !release || !target || custom_linker || !rustc_links_with_lld() {
        return;
    }
    if !off("CLAUDE_AGENT_MCP_PACK_RELOCS") && host_glibc_at_least(2, 36) {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join("link-order.txt");
    if !off("CLAUDE_AGENT_MCP_LINK_ORDER") && order.is_file() {
        println!(
            "cargo::rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo::rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// `getconf GNU_LIBC_VERSION` prints e.g. "glibc 2.36".
fn host_glibc_at_least(major: u32, minor: u32) -> bool {
    let Ok(output) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let Some(version) = text.trim().strip_prefix("glibc ") else {
        return false;
    };
    let mut numbers = version
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)) >= (major, minor)
}

/// rustc 1.90 or later: lld is the default linker of `x86_64-unknown-linux-gnu`.
fn rustc_links_with_lld() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let Ok(output) = Command::new(rustc).arg("-V").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&output.stdout);
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let mut numbers = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .split(['.', '-'])
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
