//! The environment a child process inherits (the `claude` CLI, downstream MCP servers): an
//! allowlist, never the server's whole environment, so that secrets of the server (its HTTP
//! bearer token, unrelated credentials) do not reach programs it starts
//! (`docs/claude-code-backend.md`, `docs/federation.md`).
//!
//! One rule for every child: the [`BASE_VARS`] a program needs to run at all, plus what the
//! caller's [`Allowlist`] adds for that kind of child. This module only *filters*: the caller
//! reads its own environment and hands the pairs in, so it stays free of I/O.

use std::collections::BTreeMap;
use std::ffi::OsString;

/// The parent variables every child inherits when set: what the MCP SDKs pass to a stdio
/// server by default, plus `LANG`.
#[cfg(unix)]
pub const BASE_VARS: &[&str] = &["HOME", "LANG", "LOGNAME", "PATH", "SHELL", "TERM", "USER"];
/// The parent variables every child inherits on Windows (what the MCP SDKs pass).
#[cfg(not(unix))]
pub const BASE_VARS: &[&str] = &[
    "APPDATA",
    "HOMEDRIVE",
    "HOMEPATH",
    "LOCALAPPDATA",
    "PATH",
    "PATHEXT",
    "PROCESSOR_ARCHITECTURE",
    "SYSTEMDRIVE",
    "SYSTEMROOT",
    "TEMP",
    "USERNAME",
    "USERPROFILE",
];

/// What one kind of child may inherit beyond [`BASE_VARS`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Allowlist<'a> {
    /// Exact names.
    pub names: &'a [&'a str],
    /// Name prefixes (`LC_` for the locale categories).
    pub prefixes: &'a [&'a str],
    /// Names the operator listed.
    pub operator: &'a [String],
}

impl Allowlist<'_> {
    /// Whether the child may inherit `name`.
    pub fn allows(&self, name: &str) -> bool {
        BASE_VARS.contains(&name)
            || self.names.contains(&name)
            || self.prefixes.iter().any(|prefix| name.starts_with(prefix))
            || self.operator.iter().any(|listed| listed == name)
    }
}

/// The pairs of `parent` (the process environment, read by the caller) that `allow` admits.
/// Names or values that are not UTF-8 and values that look like exported shell functions
/// (`()…`) are skipped.
pub fn inherited<I>(parent: I, allow: &Allowlist<'_>) -> BTreeMap<String, String>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    parent
        .into_iter()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .filter(|(name, value)| allow.allows(name) && !value.starts_with("()"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[cfg(unix)]
    #[test]
    fn only_allowed_variables_pass() {
        let operator = vec!["OPERATOR_LISTED".to_owned()];
        let allow = Allowlist {
            names: &["ANTHROPIC_API_KEY"],
            prefixes: &["LC_"],
            operator: &operator,
        };
        let env = inherited(
            parent(&[
                ("PATH", "/bin"),
                ("HOME", "/home/u"),
                ("LC_ALL", "C.UTF-8"),
                ("ANTHROPIC_API_KEY", "k"),
                ("OPERATOR_LISTED", "yes"),
                ("CLAUDE_AGENT_MCP_HTTP_BEARER_TOKEN", "bearer"),
                ("SECRET_X", "x"),
                ("AWS_SECRET_ACCESS_KEY", "aws"),
                ("SHELL", "() { evil; }"),
                ("XLC_ALL", "no"),
            ]),
            &allow,
        );
        let names: Vec<&str> = env.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "ANTHROPIC_API_KEY",
                "HOME",
                "LC_ALL",
                "OPERATOR_LISTED",
                "PATH"
            ]
        );
        assert_eq!(env["OPERATOR_LISTED"], "yes");
    }

    #[cfg(unix)]
    #[test]
    fn the_base_set_alone_by_default() {
        let env = inherited(
            parent(&[("USER", "u"), ("ANTHROPIC_API_KEY", "k"), ("TMPDIR", "/t")]),
            &Allowlist::default(),
        );
        assert_eq!(env.keys().collect::<Vec<_>>(), ["USER"]);
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_is_skipped() {
        use std::os::unix::ffi::OsStringExt;
        let env = inherited(
            vec![
                (OsString::from("PATH"), OsString::from_vec(vec![0xff, 0xfe])),
                (OsString::from_vec(vec![0xff]), OsString::from("v")),
                (OsString::from("HOME"), OsString::from("/h")),
            ],
            &Allowlist::default(),
        );
        assert_eq!(env.keys().collect::<Vec<_>>(), ["HOME"]);
    }
}
