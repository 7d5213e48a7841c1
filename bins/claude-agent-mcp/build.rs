//! Release builds on x86_64 Linux lay out the server's code in the order of
//! `link-order.txt` (written by `cargo xtask link-order`): the functions that serve requests
//! end up next to each other, so far fewer pages of the binary become resident
//! (`docs/performance.md`). The layout changes nothing else; names that no longer exist are
//! skipped by the linker.
//!
//! Applied only where the linker is known to be lld, which rustc uses by default for
//! `x86_64-unknown-linux-gnu` since 1.90, and skipped when a linker is chosen explicitly or
//! `CLAUDE_AGENT_MCP_LINK_ORDER=off`.

// A build script talks to cargo through stdout.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=link-order.txt");
    println!("cargo::rerun-if-env-changed=CLAUDE_AGENT_MCP_LINK_ORDER");
    println!("cargo::rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let release = var("PROFILE") == "release";
    let target = var("TARGET") == "x86_64-unknown-linux-gnu";
    let opted_out = matches!(
        var("CLAUDE_AGENT_MCP_LINK_ORDER").as_str(),
        "off" | "0" | "false"
    );
    let custom_linker = !var("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_empty()
        || var("CARGO_ENCODED_RUSTFLAGS")
            .split('\x1f')
            .any(|flag| flag.contains("linker") || flag.contains("fuse-ld"));
    if !release || !target || opted_out || custom_linker || !rustc_links_with_lld() {
        return;
    }
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join("link-order.txt");
    if order.is_file() {
        println!(
            "cargo::rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo::rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
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
