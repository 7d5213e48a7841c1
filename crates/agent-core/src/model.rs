//! Session statuses, workflows and profile names: the contract strings, once.

/// Declares an enum of contract strings: serde renames, `ALL`, `as_str`, `parse`, `choices`
/// and `Display`, so that each string is written once. Exported for the other crates.
#[macro_export]
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in the order the reference lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The contract string.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Parses the exact contract string.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// The valid strings, sorted, as a Python-style list (as the messages show them).
            pub fn choices() -> String {
                let mut names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                names.sort_unstable();
                $crate::pyfmt::list(names)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use crate::string_enum;

string_enum! {
    /// The stored status of a session (`docs/reference/sessions.md#3-statuses-and-transitions`).
    SessionStatus {
        Created => "created",
        Running => "running",
        Completed => "completed",
        Failed => "failed",
        Interrupted => "interrupted",
        // An addition (`docs/reference/sessions.md#3-statuses-and-transitions`): the execution was
        // cancelled.
        Cancelled => "cancelled",
    }
}

string_enum! {
    /// The workflow that produced a session or an envelope.
    Workflow {
        RunTask => "run_task",
        ContinueSession => "continue_session",
        VerifyTask => "verify_task",
        // `agent_fork_session` (an addition, `docs/reference/tools.md#17-agent_fork_session`): its
        // envelope and the continuation it runs on the new session; a fork keeps its parent's
        // workflow as its own.
        ForkSession => "fork_session",
        // Envelope only: `agent_cancel_session` never creates or runs a session.
        CancelSession => "cancel_session",
    }
}

string_enum! {
    /// An execution profile (`docs/reference/policy.md#1-profiles`).
    Profile {
        General => "general",
        Verification => "verification",
    }
}

string_enum! {
    /// How the Claude Code backend drives the CLI (`docs/claude-code-backend.md`): `native`
    /// (`-p --output-format json`, prompt on stdin, resume, permissions, usage) or `text` (the
    /// original's `--print <prompt>` plain-text invocation). One type for the configuration
    /// that reads it and the backend that obeys it.
    ClaudeCodeMode {
        Native => "native",
        Text => "text",
    }
}

impl Default for ClaudeCodeMode {
    /// `native`, the configuration's default.
    fn default() -> Self {
        ClaudeCodeMode::Native
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip() {
        for s in SessionStatus::ALL {
            assert_eq!(SessionStatus::parse(s.as_str()), Some(*s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
        assert_eq!(Workflow::parse("verify_task"), Some(Workflow::VerifyTask));
        assert_eq!(Profile::parse("bogus"), None);
        assert_eq!(ClaudeCodeMode::default().as_str(), "native");
        assert_eq!(ClaudeCodeMode::choices(), "['native', 'text']");
    }
}
