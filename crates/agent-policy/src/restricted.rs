//! The APNTalk restriction contract (`docs/reference/policy.md#6-runtime-modes`), every rule of
//! the restricted verification mode in one place: the resolved values, the required backend and
//! transport, the tool list, the configuration problems, and the self-check that must pass
//! before any state is touched (the status tool reports the same check).

use std::path::PathBuf;

use agent_core::pyfmt;

use crate::config::{BackendKind, Config, RuntimeMode, Transport, vars};

pub const POLICY_MODE: &str = "verification_only";
pub const AUTHORITY_MODE: &str = "advisory_only";
pub const TOOL_SURFACE_MODE: &str = "restricted";
pub const ACTIVE_PROFILE: &str = "apntalk_verification";
pub const CONTRACT_ID: &str = "apntalk_verification_v1";
pub const CONTRACT_VERSION: i64 = 1;
/// The only backend the mode runs on.
pub const REQUIRED_BACKEND: BackendKind = BackendKind::ClaudeCode;
/// The only transport the mode serves.
pub const REQUIRED_TRANSPORT: Transport = Transport::Stdio;
/// The admitted tools, sorted: the only tools published in the restricted mode (the binary
/// derives its tool surface from this list).
pub const ALLOWED_TOOLS: [&str; 2] = ["agent_get_runtime_status", "agent_verify_task"];

/// The resolved contract of a configuration in `apntalk_verification` mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestrictionContract {
    pub allowed_directories: Vec<PathBuf>,
}

impl RestrictionContract {
    /// The contract when `config` is in the restricted mode.
    pub fn of(config: &Config) -> Option<Self> {
        (config.mode == RuntimeMode::ApntalkVerification).then(|| Self {
            allowed_directories: config.allowed_dirs.clone(),
        })
    }
}

fn is_absolute(dir: &str) -> bool {
    dir.starts_with('/') || dir.chars().nth(1) == Some(':')
}

/// The configuration problems of the mode (reported with the other configuration errors,
/// before the self-check): the backend and the transport as parsed, with the raw values read.
pub(crate) fn configuration_problems(
    (backend, backend_raw): (Option<BackendKind>, &str),
    (transport, transport_raw): (Option<Transport>, &str),
) -> Vec<String> {
    let mode = format!("{}={}", vars::MODE, RuntimeMode::ApntalkVerification);
    let mut problems = Vec::new();
    if backend != Some(REQUIRED_BACKEND) {
        problems.push(format!(
            "{mode} requires {}='{REQUIRED_BACKEND}', got {}",
            vars::EXECUTION_BACKEND,
            pyfmt::repr_str(backend_raw)
        ));
    }
    if transport != Some(REQUIRED_TRANSPORT) {
        problems.push(format!(
            "{mode} requires {}='{REQUIRED_TRANSPORT}', got {}",
            vars::TRANSPORT,
            pyfmt::repr_str(transport_raw)
        ));
    }
    problems
}

/// Every unmet requirement of the contract for `config` publishing `exposed_tools`
/// (`docs/reference/policy.md#62-enforcement`); empty when compliant. The one check: the startup self-check aborts on any reason
/// ([`violation_message`]), and the status tool reports the same reasons
/// (`non_compliance_reasons`) for the tools actually published.
pub fn contract_violations(config: &Config, exposed_tools: &[&str]) -> Vec<String> {
    let mut reasons = Vec::new();
    if config.backend != REQUIRED_BACKEND {
        reasons.push(format!(
            "backend='{}' does not match required_backend='{REQUIRED_BACKEND}'",
            config.backend
        ));
    }
    if config.transport != REQUIRED_TRANSPORT {
        reasons.push(format!(
            "transport='{}' does not match required_transport='{REQUIRED_TRANSPORT}'",
            config.transport
        ));
    }
    if config.allowed_dirs.is_empty() {
        reasons.push(
            "allowed_directories is empty — bounded filesystem scope cannot be proven".to_owned(),
        );
    }
    for dir in &config.allowed_dirs {
        let text = dir.to_string_lossy();
        if !is_absolute(&text) {
            reasons.push(format!(
                "allowed_directory '{text}' is not an absolute path — bounded directories must be normalized absolute paths"
            ));
        }
    }
    let mut extra: Vec<&str> = exposed_tools
        .iter()
        .copied()
        .filter(|tool| !ALLOWED_TOOLS.contains(tool))
        .collect();
    extra.sort_unstable();
    if !extra.is_empty() {
        reasons.push(format!("extra tools registered: {}", pyfmt::list(extra)));
    }
    let missing: Vec<&str> = ALLOWED_TOOLS
        .into_iter()
        .filter(|tool| !exposed_tools.contains(tool))
        .collect();
    if !missing.is_empty() {
        reasons.push(format!("admitted tools missing: {}", pyfmt::list(missing)));
    }
    reasons
}

/// The startup abort message for `reasons` (`docs/reference/policy.md#62-enforcement`).
pub fn violation_message(reasons: &[String]) -> String {
    let mut out = String::from("APNTalk verification mode startup contract violation(s):");
    for reason in reasons {
        out.push_str("\n  • ");
        out.push_str(reason);
    }
    out.push_str("\nStartup aborted (fail_closed=true). Fix the above before starting in apntalk_verification mode.");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CliOverrides, from_vars};
    use std::collections::BTreeMap;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let dir = std::env::temp_dir();
        let mut vars: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        vars.entry("CLAUDE_AGENT_MCP_MODE".into())
            .or_insert("apntalk_verification".into());
        vars.entry("CLAUDE_AGENT_MCP_EXECUTION_BACKEND".into())
            .or_insert("claude_code".into());
        from_vars(&vars, &dir, &CliOverrides::default()).unwrap()
    }

    #[test]
    fn a_compliant_configuration_has_no_violations() {
        let c = config(&[]);
        assert_eq!(
            contract_violations(&c, &ALLOWED_TOOLS),
            Vec::<String>::new()
        );
        assert_eq!(
            RestrictionContract::of(&c).unwrap().allowed_directories,
            c.allowed_dirs
        );
    }

    #[test]
    fn an_empty_allowlist_violates_the_contract() {
        let c = config(&[("CLAUDE_AGENT_MCP_ALLOWED_DIRS", ",")]);
        let reasons = contract_violations(&c, &ALLOWED_TOOLS);
        assert_eq!(
            reasons,
            ["allowed_directories is empty — bounded filesystem scope cannot be proven"]
        );
        assert_eq!(
            violation_message(&reasons),
            "APNTalk verification mode startup contract violation(s):\n  • allowed_directories is empty — bounded filesystem scope cannot be proven\nStartup aborted (fail_closed=true). Fix the above before starting in apntalk_verification mode."
        );
    }

    #[test]
    fn standard_mode_has_no_contract() {
        let c = config(&[
            ("CLAUDE_AGENT_MCP_MODE", "standard"),
            ("CLAUDE_AGENT_MCP_EXECUTION_BACKEND", "api"),
        ]);
        assert!(RestrictionContract::of(&c).is_none());
        assert_eq!(
            contract_violations(&c, &ALLOWED_TOOLS),
            ["backend='api' does not match required_backend='claude_code'"]
        );
    }

    #[test]
    fn the_published_tools_must_be_exactly_the_admitted_pair() {
        let c = config(&[]);
        assert_eq!(
            contract_violations(&c, &["agent_verify_task", "agent_run_task"]),
            [
                "extra tools registered: ['agent_run_task']",
                "admitted tools missing: ['agent_get_runtime_status']"
            ]
        );
    }
}
