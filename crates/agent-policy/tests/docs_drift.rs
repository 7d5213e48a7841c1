//! `docs/configuration.md` and the variables the code reads must not drift apart: every name in
//! `agent_policy::config::vars` is documented, and every `CLAUDE_AGENT_MCP_*` name the page
//! mentions is one the code reads.
//!
//! The names are read from the source of the `vars` module (Rust cannot list a module's
//! constants), and a few are checked against the constants themselves so that a change in the
//! module's layout cannot make the parse silently come back empty.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use agent_policy::config::vars;

const CONFIG_SOURCE: &str = include_str!("../src/config/mod.rs");
const CONFIGURATION_DOC: &str = include_str!("../../../docs/configuration.md");

/// The page abbreviates the long Claude Code names as `…_SUFFIX` after spelling out the first
/// one; such a mention stands for this prefix followed by the suffix.
const ABBREVIATED_PREFIX: &str = "CLAUDE_AGENT_MCP_CLAUDE_CODE_";

/// `(constant, value)` of every `pub const` in `pub mod vars { … }`.
fn vars_in_source() -> Vec<(String, String)> {
    let start = CONFIG_SOURCE
        .find("pub mod vars {")
        .expect("`pub mod vars {` in src/config/mod.rs");
    let body = &CONFIG_SOURCE[start..];
    let body = &body[..body.find("\n}").expect("end of `mod vars`")];
    body.split("pub const ")
        .skip(1)
        .map(|item| {
            let name = item.split(':').next().unwrap().trim().to_owned();
            let value = item.split('"').nth(1).expect("a string literal").to_owned();
            (name, value)
        })
        .collect()
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
}

/// The `[A-Z0-9_]` run starting at `at`, without trailing underscores.
fn name_at(text: &str, at: usize) -> &str {
    let rest = &text[at..];
    let end = rest.find(|c| !is_name_char(c)).unwrap_or(rest.len());
    rest[..end].trim_end_matches('_')
}

/// Every variable name the page mentions, abbreviations expanded.
fn names_in_doc(doc: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for prefix in ["CLAUDE_AGENT_", "ANTHROPIC_"] {
        for (at, _) in doc.match_indices(prefix) {
            let preceded_by_name = doc[..at].chars().next_back().is_some_and(is_name_char);
            let name = name_at(doc, at);
            // `CLAUDE_AGENT_MCP_*` in prose is the family, not a variable.
            if !preceded_by_name && name.len() > prefix.len() && name != "CLAUDE_AGENT_MCP" {
                names.insert(name.to_owned());
            }
        }
    }
    for (at, _) in doc.match_indices("…_") {
        let suffix = name_at(doc, at + "…_".len());
        if !suffix.is_empty() {
            names.insert(format!("{ABBREVIATED_PREFIX}{suffix}"));
        }
    }
    names
}

#[test]
fn the_vars_module_is_parsed() {
    let parsed = vars_in_source();
    for (constant, value) in [
        ("ANTHROPIC_API_KEY", vars::ANTHROPIC_API_KEY),
        ("MODE", vars::MODE),
        ("LEGACY_STATE_DIR", vars::LEGACY_STATE_DIR),
        ("LIMITED_TOOL_FORWARDING", vars::LIMITED_TOOL_FORWARDING),
        ("MEDIATION_POLICY_PROFILE", vars::MEDIATION_POLICY_PROFILE),
        ("HTTP_BEARER_TOKEN", vars::HTTP_BEARER_TOKEN),
    ] {
        assert!(
            parsed.contains(&(constant.to_owned(), value.to_owned())),
            "vars::{constant} = {value:?} not found in {parsed:?}"
        );
    }
    let values: BTreeSet<&str> = parsed.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values.len(), parsed.len(), "two constants share a name");
}

#[test]
fn every_variable_the_code_reads_is_documented() {
    let documented = names_in_doc(CONFIGURATION_DOC);
    let undocumented: Vec<String> = vars_in_source()
        .into_iter()
        .filter(|(_, value)| !documented.contains(value))
        .map(|(constant, value)| format!("{value} (vars::{constant})"))
        .collect();
    assert!(
        undocumented.is_empty(),
        "docs/configuration.md does not mention: {undocumented:#?}"
    );
}

#[test]
fn every_documented_variable_is_read_by_the_code() {
    let known: BTreeSet<String> = vars_in_source().into_iter().map(|(_, v)| v).collect();
    let unknown: Vec<String> = names_in_doc(CONFIGURATION_DOC)
        .into_iter()
        .filter(|name| name.starts_with("CLAUDE_AGENT_MCP_") && !known.contains(name))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/configuration.md mentions names the code does not read: {unknown:#?}"
    );
}

#[test]
fn name_extraction() {
    let doc = "Set `CLAUDE_AGENT_MCP_MODE` (legacy CLAUDE_AGENT_MODEL), then \
               CLAUDE_AGENT_MCP_CLAUDE_CODE_MAX_CONTINUATION_TURNS (5), `…_MAX_CONTINUATION_WARNINGS` \
               and ANTHROPIC_API_KEY; not XCLAUDE_AGENT_MCP_NOPE nor CLAUDE_AGENT_MCP_*.";
    let names: Vec<String> = names_in_doc(doc).into_iter().collect();
    assert_eq!(
        names,
        [
            "ANTHROPIC_API_KEY",
            "CLAUDE_AGENT_MCP_CLAUDE_CODE_MAX_CONTINUATION_TURNS",
            "CLAUDE_AGENT_MCP_CLAUDE_CODE_MAX_CONTINUATION_WARNINGS",
            "CLAUDE_AGENT_MCP_MODE",
            "CLAUDE_AGENT_MODEL",
        ]
    );
}
