//! `docs/configuration.md` and the variables the code reads must not drift apart: every name in
//! `agent_policy::config::vars` is documented, and every `CLAUDE_AGENT_MCP_*` name the page
//! mentions is one the code reads.
//!
//! The names come from `vars::ALL`, which the declaration of every constant also fills.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use agent_policy::config::vars;

const CONFIGURATION_DOC: &str = include_str!("../../../../docs/configuration.md");

/// The page abbreviates the long Claude Code names as `…_SUFFIX` after spelling out the first
/// one; such a mention stands for this prefix followed by the suffix.
const ABBREVIATED_PREFIX: &str = "CLAUDE_AGENT_MCP_CLAUDE_CODE_";

/// Every variable name the code reads.
fn vars_in_code() -> Vec<&'static str> {
    vars::ALL.iter().map(|(name, _)| *name).collect()
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
    // `OTEL_`: the standard OpenTelemetry variables the server reads itself.
    for prefix in ["CLAUDE_AGENT_", "ANTHROPIC_", "OTEL_"] {
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
fn the_list_holds_the_constants() {
    let names = vars_in_code();
    for name in [
        vars::ANTHROPIC_API_KEY,
        vars::MODE,
        vars::LEGACY_STATE_DIR,
        vars::LIMITED_TOOL_FORWARDING,
        vars::MEDIATION_POLICY_PROFILE,
        vars::HTTP_BEARER_TOKEN,
    ] {
        assert!(names.contains(&name), "{name} not in vars::ALL");
    }
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "two constants share a name");
}

#[test]
fn every_variable_the_code_reads_is_documented() {
    let documented = names_in_doc(CONFIGURATION_DOC);
    let undocumented: Vec<&str> = vars_in_code()
        .into_iter()
        .filter(|name| !documented.contains(*name))
        .collect();
    assert!(
        undocumented.is_empty(),
        "docs/configuration.md does not mention: {undocumented:#?}"
    );
}

#[test]
fn every_documented_variable_is_read_by_the_code() {
    let known: BTreeSet<&str> = vars_in_code().into_iter().collect();
    let unknown: Vec<String> = names_in_doc(CONFIGURATION_DOC)
        .into_iter()
        .filter(|name| name.starts_with("CLAUDE_AGENT_MCP_") && !known.contains(name.as_str()))
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

/// The text of `docs/configuration.md` from `start` up to the next `end`.
fn doc_between<'a>(start: &str, end: &str) -> &'a str {
    let from = CONFIGURATION_DOC
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} in docs/configuration.md"));
    let rest = &CONFIGURATION_DOC[from + start.len()..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

/// The section "The `.env` file" lists exactly the variables a `.env` in the working directory
/// may set, and the others under the reason of their classification.
#[test]
fn the_dotenv_section_matches_the_classification() {
    use agent_policy::config::{Reason, Trust};

    let names_of = |pick: &dyn Fn(Trust) -> bool| -> BTreeSet<String> {
        vars::ALL
            .iter()
            .filter(|(_, trust)| pick(*trust))
            .map(|(name, _)| (*name).to_owned())
            .collect()
    };
    let allowed = doc_between(
        "What a `.env` in the working directory may set:",
        "What it may not set",
    );
    // The first cell of each row names the variables; the second may mention others.
    let first_cells: String = allowed
        .lines()
        .filter_map(|l| l.strip_prefix("| ")?.split('|').next())
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        names_in_doc(&first_cells),
        names_of(&|trust| trust == Trust::Project)
    );
    let refused = doc_between("What it may not set, and why:", "(`…_` abbreviates");
    let mut rows = 0;
    for row in refused.lines().filter(|l| l.starts_with("| ")) {
        let why = row.split('|').nth(1).unwrap().trim();
        if why == "Why" {
            continue;
        }
        let reason = [
            Reason::Executes,
            Reason::SendsCredentials,
            Reason::Files,
            Reason::Listens,
            Reason::Limits,
            Reason::Policy,
        ]
        .into_iter()
        .find(|reason| reason.describe() == why)
        .unwrap_or_else(|| panic!("no reason reads {why:?}"));
        assert_eq!(
            names_in_doc(row),
            names_of(&|trust| trust == Trust::Operator(reason)),
            "{why}"
        );
        rows += 1;
    }
    assert_eq!(rows, 6, "one row per reason");
}

#[path = "docs_drift/citations.rs"]
mod citations;

/// The paths the README's "Repository layout" table names, as written (`crates/agent-core`,
/// `examples/`, `.ci/run`...).
fn layout_paths(readme: &str) -> Vec<String> {
    let table = readme
        .split("## Repository layout")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the README has a Repository layout section");
    table
        .lines()
        .filter_map(|line| line.strip_prefix("| "))
        .filter_map(|row| row.split(" |").next())
        .flat_map(|cell| cell.split(", "))
        .filter_map(|cell| cell.trim().strip_prefix('`')?.strip_suffix('`'))
        .map(|path| path.trim_end_matches('/').to_owned())
        .collect()
}

/// The repository's top-level folders that git tracks files in, and the workspace members.
fn folders_and_members(root: &std::path::Path) -> (BTreeSet<String>, Vec<String>) {
    let listed = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .expect("git runs");
    assert!(listed.status.success(), "git ls-files");
    let folders = String::from_utf8_lossy(&listed.stdout)
        .split('\0')
        .filter_map(|path| path.split_once('/').map(|(top, _)| top.to_owned()))
        .collect();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members = manifest
        .split("members = [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .expect("the workspace lists its members")
        .split(',')
        .map(|member| member.trim().trim_matches('"').to_owned())
        .filter(|member| !member.is_empty())
        .collect();
    (folders, members)
}

#[test]
fn the_readme_layout_names_every_crate_and_top_level_folder() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let named = layout_paths(&readme);
    let (folders, members) = folders_and_members(&root);
    assert!(
        members.len() >= 10,
        "members read from Cargo.toml: {members:?}"
    );
    for member in &members {
        assert!(
            named.contains(member),
            "README's layout table lacks the workspace member `{member}` (it names {named:?})"
        );
    }
    for folder in &folders {
        assert!(
            named
                .iter()
                .any(|path| path == folder || path.starts_with(&format!("{folder}/"))),
            "README's layout table lacks the top-level folder `{folder}/` (it names {named:?})"
        );
    }
}

/// The server's own variable names (`CLAUDE_AGENT_…`) spelled in a file's text.
fn server_names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("CLAUDE_AGENT_") {
        let preceded_by_name = text[..at].chars().next_back().is_some_and(is_name_char);
        let name = name_at(text, at);
        if !preceded_by_name && name.len() > "CLAUDE_AGENT_".len() {
            names.insert(name.to_owned());
        }
    }
    names
}

/// Production sources: `src/` of every crate but the test kit, the binary's build script,
/// xtask and the examples.
fn production_sources(root: &std::path::Path) -> Vec<(String, String)> {
    let listed = std::process::Command::new("git")
        .args(["ls-files", "-z", "--", "*.rs"])
        .current_dir(root)
        .output()
        .expect("git runs");
    assert!(listed.status.success(), "git ls-files");
    String::from_utf8_lossy(&listed.stdout)
        .split('\0')
        .filter(|path| !path.is_empty() && !path.contains("/tests/"))
        .filter(|path| !path.starts_with("crates/agent-testkit/"))
        .filter(|path| path.contains("/src/") || path.ends_with("build.rs"))
        .filter_map(|path| {
            let text = std::fs::read_to_string(root.join(path)).ok()?;
            Some((path.to_owned(), text))
        })
        .collect()
}

/// Build-time switches of the release build, read only by the files that make that build
/// (`BUILD_FILES`) and documented with the measures they turn off in `docs/performance.md`.
const BUILD_SWITCHES: [&str; 3] = [
    "CLAUDE_AGENT_MCP_LINK_ORDER",
    "CLAUDE_AGENT_MCP_PACK_RELOCS",
    "CLAUDE_AGENT_MCP_STATIC",
];
const BUILD_FILES: [&str; 2] = ["bins/claude-agent-mcp/build.rs", "xtask/src/bench/dist.rs"];

/// Files outside the tests that read or set a test-harness variable (documented in
/// `docs/testing.md` and owned by `agent_testkit::peers`): the property case count, read by
/// unit tests that cannot link the test kit, and CI's definition, which sets the peers.
const HARNESS_FILES: [&str; 2] = ["crates/agent-core/src/testing.rs", "xtask/src/release.rs"];

#[test]
fn every_server_variable_production_code_names_is_declared_in_the_configuration() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let declared: BTreeSet<&str> = vars_in_code().into_iter().collect();
    let performance = std::fs::read_to_string(root.join("docs/performance.md")).unwrap();
    let testing = std::fs::read_to_string(root.join("docs/testing.md")).unwrap();
    let sources = production_sources(&root);
    assert!(
        sources.len() > 50,
        "production sources found: {}",
        sources.len()
    );
    let mut problems = Vec::new();
    for (path, text) in &sources {
        for name in server_names_in(text) {
            let build_switch = BUILD_SWITCHES.contains(&name.as_str());
            if build_switch && BUILD_FILES.contains(&path.as_str()) {
                if !performance.contains(&name) {
                    problems.push(format!("{path}: {name} is not in docs/performance.md"));
                }
            } else if HARNESS_FILES.contains(&path.as_str()) && !declared.contains(name.as_str()) {
                if !testing.contains(&format!("`{name}`")) {
                    problems.push(format!("{path}: {name} is not in docs/testing.md"));
                }
            } else if !declared.contains(name.as_str()) {
                problems.push(format!(
                    "{path}: {name} is not a variable of agent_policy::config::vars"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
