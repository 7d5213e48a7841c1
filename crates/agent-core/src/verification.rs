//! Verification results (`docs/reference/verification.md#7-unavailable-results`,
//! `docs/reference/verification.md#8-result-shapes`): the 18-key result of every path, and the
//! classification of backend failures into routable "unavailable" outcomes.

use serde::Serialize;

use crate::error::ErrorCode;
use crate::ports::{ExecutionError, FailureKind, Usage};
use crate::preflight::{Assessment, Decision, ReasonCode, assess, assess_unavailable};
use crate::verdict::{ParsedVerdict, Verdict};

/// The verification result object, keys in the contractual order: the parsed verdict and its
/// lists, the assessment, then how the verification ended; `usage` is an addition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerificationResult {
    #[serde(flatten)]
    pub parsed: ParsedVerdict,
    #[serde(flatten)]
    pub assessment: Assessment,
    /// The assessment's decision again.
    pub outcome_kind: Decision,
    pub failure_class: Option<&'static str>,
    pub failure_code: Option<&'static str>,
    pub retryable: bool,
    pub fallback_recommended: bool,
    pub verification_performed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

impl VerificationResult {
    fn from_parts(parsed: ParsedVerdict, a: Assessment, performed: bool) -> Self {
        Self {
            parsed,
            outcome_kind: a.decision,
            assessment: a,
            failure_class: None,
            failure_code: None,
            retryable: false,
            fallback_recommended: false,
            verification_performed: performed,
            usage: None,
        }
    }

    /// `docs/reference/verification.md#81-normal`: verification ran and its output was parsed.
    pub fn performed(parsed: ParsedVerdict, lint: &[ReasonCode], usage: Option<Usage>) -> Self {
        let a = assess(parsed.verdict, lint);
        Self {
            usage,
            ..Self::from_parts(parsed, a, true)
        }
    }

    /// `docs/reference/verification.md#82-restricted-mode-block` and
    /// `docs/reference/verification.md#83-missing-evidence`: blocked before any session
    /// (restricted-mode mismatch, missing evidence).
    pub fn not_performed(lint: &[ReasonCode]) -> Self {
        let parsed = fail_closed_lists();
        let a = assess(Verdict::FailClosed, lint);
        Self::from_parts(parsed, a, false)
    }

    /// `docs/reference/verification.md#84-unavailable`: the backend could not produce a usable
    /// verification.
    pub fn unavailable(lint: &[ReasonCode], failure: &Unavailability) -> Self {
        let a = assess_unavailable(lint);
        Self {
            failure_class: Some(failure.failure_class),
            failure_code: Some(failure.failure_code.as_str()),
            retryable: failure.retryable,
            fallback_recommended: true,
            ..Self::from_parts(fail_closed_lists(), a, false)
        }
    }
}

fn fail_closed_lists() -> ParsedVerdict {
    ParsedVerdict {
        verdict: Verdict::FailClosed,
        findings: Vec::new(),
        contradictions: Vec::new(),
        missing_evidence: Vec::new(),
        restrictions: Vec::new(),
    }
}

/// Why a verification is unavailable (`docs/reference/verification.md#7-unavailable-results`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailability {
    pub failure_class: &'static str,
    /// The failure code: a `claude_code_*` code of the reference, or for Messages API failures an
    /// `api_*` code (an addition; the original did not classify them).
    pub failure_code: FailureCode,
    pub retryable: bool,
    pub summary: String,
}

/// A failure code: one of the reference's `claude_code_*` codes, or an addition for the Messages
/// API (`docs/reference/verification.md#7-unavailable-results`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCode {
    Contract(ErrorCode),
    Api(&'static str),
}

impl FailureCode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::Contract(code) => code.as_str(),
            FailureCode::Api(code) => code,
        }
    }
}

fn unavailable(
    class: &'static str,
    code: FailureCode,
    retryable: bool,
    summary: impl Into<String>,
) -> Unavailability {
    Unavailability {
        failure_class: class,
        failure_code: code,
        retryable,
        summary: summary.into(),
    }
}

const AUTH_WORDS: [&str; 12] = [
    "not logged in",
    "not authenticated",
    "login required",
    "please log in",
    "please login",
    "sign in",
    "unauthenticated",
    "credentials",
    "auth",
    "token expired",
    "session expired",
    "claude login",
];

const LIMIT_WORDS: [&str; 10] = [
    "limit",
    "quota",
    "rate limit",
    "usage limit",
    "exceeded",
    "too many requests",
    "cap reached",
    "daily limit",
    "monthly limit",
    "usage cap",
];

/// The empty-output rule, whichever backend is active (failure code as the reference names it, a
/// **[kept]** quirk of `docs/reference/verification.md#7-unavailable-results`).
pub fn empty_output() -> Unavailability {
    unavailable(
        "backend_unusable_response",
        FailureCode::Contract(ErrorCode::ClaudeCodeEmptyResponse),
        true,
        "Claude Code returned an empty response. Verification cannot be performed on blank output.",
    )
}

/// Classifies a backend failure during verification; `None` means it is reported as a generic
/// error envelope (a cancellation, or a code outside the classified set).
pub fn classify(error: &ExecutionError) -> Option<Unavailability> {
    use FailureCode::{Api, Contract};
    match error.code {
        ErrorCode::ClaudeCodeUnavailable => Some(unavailable(
            "backend_unavailable",
            Contract(ErrorCode::ClaudeCodeNotInstalled),
            false,
            "Claude Code CLI is unavailable or not installed. Ensure the 'claude' binary is on PATH and accessible.",
        )),
        ErrorCode::ClaudeCodeInvocationError => {
            let text = error.message.to_lowercase();
            Some(if text.contains("timed out") {
                unavailable(
                    "backend_timeout",
                    Contract(ErrorCode::ClaudeCodeTimeout),
                    true,
                    "Claude Code timed out before returning a response. The verification could not be completed in the allowed time.",
                )
            } else if AUTH_WORDS.iter().any(|w| text.contains(w)) {
                unavailable(
                    "backend_auth_failure",
                    Contract(ErrorCode::ClaudeCodeNotAuthenticated),
                    false,
                    "Claude Code authentication failed. Run 'claude login' to re-authenticate before retrying.",
                )
            } else if LIMIT_WORDS.iter().any(|w| text.contains(w)) {
                unavailable(
                    "backend_limit_reached",
                    Contract(ErrorCode::ClaudeCodeLimitReached),
                    true,
                    "Claude Code verification backend is currently unavailable due to usage limits. Retry after the limit window resets or use an external fallback verifier.",
                )
            } else {
                unavailable(
                    "backend_invocation_error",
                    Contract(ErrorCode::ClaudeCodeProcessError),
                    false,
                    "Claude Code process failed during verification.",
                )
            })
        }
        ErrorCode::NormalizationError => Some(unavailable(
            "backend_unusable_response",
            Contract(ErrorCode::ClaudeCodeUnparseableResponse),
            true,
            "Claude Code returned a response that could not be normalized. The verification result is not reliable.",
        )),
        ErrorCode::ProviderRuntimeError => {
            classify_api(error.kind).map(|(class, code, retryable, summary)| {
                unavailable(class, Api(code), retryable, summary)
            })
        }
        _ => None,
    }
}

/// Messages API failures by kind and HTTP status (an addition to the classification of
/// `docs/reference/verification.md#7-unavailable-results`).
fn classify_api(kind: FailureKind) -> Option<(&'static str, &'static str, bool, &'static str)> {
    Some(match kind {
        FailureKind::Cancelled | FailureKind::LeaseLost => return None,
        FailureKind::Timeout => (
            "backend_timeout",
            "api_timeout",
            true,
            "The Messages API did not answer in time. The verification could not be completed in the allowed time.",
        ),
        FailureKind::Connection => (
            "backend_unavailable",
            "api_unreachable",
            true,
            "The Messages API could not be reached. Retry later or use an external fallback verifier.",
        ),
        FailureKind::HttpStatus(401 | 403) => (
            "backend_auth_failure",
            "api_not_authenticated",
            false,
            "The Messages API rejected the credentials. Check ANTHROPIC_API_KEY before retrying.",
        ),
        FailureKind::HttpStatus(429) => (
            "backend_limit_reached",
            "api_rate_limited",
            true,
            "The Messages API rate limit was reached. Retry after the limit window resets or use an external fallback verifier.",
        ),
        FailureKind::HttpStatus(529) => (
            "backend_unavailable",
            "api_overloaded",
            true,
            "The Messages API is overloaded. Retry later or use an external fallback verifier.",
        ),
        FailureKind::HttpStatus(500..=599) => (
            "backend_unavailable",
            "api_server_error",
            true,
            "The Messages API failed with a server error. Retry later or use an external fallback verifier.",
        ),
        FailureKind::HttpStatus(_) => (
            "backend_invocation_error",
            "api_request_rejected",
            false,
            "The Messages API rejected the verification request.",
        ),
        FailureKind::Unspecified => (
            "backend_invocation_error",
            "api_request_failed",
            false,
            "The Messages API request failed during verification.",
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn invocation(message: &str) -> ExecutionError {
        ExecutionError::new(ErrorCode::ClaudeCodeInvocationError, message)
    }

    #[test]
    fn claude_code_classification_table() {
        let cases = [
            (
                "claude CLI timed out after 300 seconds",
                "backend_timeout",
                "claude_code_timeout",
                true,
            ),
            (
                "claude CLI exited with code 1: Not logged in",
                "backend_auth_failure",
                "claude_code_not_authenticated",
                false,
            ),
            (
                "claude CLI exited with code 1: rate limit exceeded",
                "backend_limit_reached",
                "claude_code_limit_reached",
                true,
            ),
            (
                "claude CLI exited with code 1: boom",
                "backend_invocation_error",
                "claude_code_process_error",
                false,
            ),
        ];
        for (message, class, code, retryable) in cases {
            let u = classify(&invocation(message)).unwrap();
            assert_eq!(
                (u.failure_class, u.failure_code.as_str(), u.retryable),
                (class, code, retryable),
                "{message}"
            );
        }
        let u = classify(&ExecutionError::new(ErrorCode::ClaudeCodeUnavailable, "x")).unwrap();
        assert_eq!(
            (u.failure_class, u.failure_code.as_str()),
            ("backend_unavailable", "claude_code_not_installed")
        );
        let u = classify(&ExecutionError::new(ErrorCode::NormalizationError, "x")).unwrap();
        assert_eq!(u.failure_code.as_str(), "claude_code_unparseable_response");
        assert!(classify(&ExecutionError::cancelled()).is_none());
        assert!(classify(&ExecutionError::new(ErrorCode::InternalError, "x")).is_none());
    }

    #[test]
    fn api_classification_by_status() {
        let api = |kind| {
            ExecutionError::new(ErrorCode::ProviderRuntimeError, "Claude API error: x")
                .with_kind(kind)
        };
        let code = |kind| classify(&api(kind)).map(|u| (u.failure_code.as_str(), u.retryable));
        assert_eq!(
            code(FailureKind::HttpStatus(401)),
            Some(("api_not_authenticated", false))
        );
        assert_eq!(
            code(FailureKind::HttpStatus(429)),
            Some(("api_rate_limited", true))
        );
        assert_eq!(
            code(FailureKind::HttpStatus(529)),
            Some(("api_overloaded", true))
        );
        assert_eq!(
            code(FailureKind::HttpStatus(503)),
            Some(("api_server_error", true))
        );
        assert_eq!(
            code(FailureKind::HttpStatus(400)),
            Some(("api_request_rejected", false))
        );
        assert_eq!(code(FailureKind::Timeout), Some(("api_timeout", true)));
        assert_eq!(
            code(FailureKind::Connection),
            Some(("api_unreachable", true))
        );
    }

    #[test]
    fn result_shapes_have_the_eighteen_keys_in_order() {
        let keys = |r: &VerificationResult| -> Vec<String> {
            serde_json::to_value(r)
                .unwrap()
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        let expected = [
            "verdict",
            "findings",
            "contradictions",
            "missing_evidence",
            "restrictions",
            "decision",
            "primary_reason",
            "reason_codes",
            "operator_guidance",
            "evidence_sufficiency",
            "scope_assessment",
            "profile_alignment",
            "outcome_kind",
            "failure_class",
            "failure_code",
            "retryable",
            "fallback_recommended",
            "verification_performed",
        ];
        let unavailable = VerificationResult::unavailable(&[], &empty_output());
        for r in [
            VerificationResult::not_performed(&[ReasonCode::ScopeTooBroad]),
            unavailable.clone(),
        ] {
            assert_eq!(keys(&r), expected);
        }
        assert_eq!(
            serde_json::to_value(&unavailable).unwrap(),
            json!({
                "verdict": "fail_closed", "findings": [], "contradictions": [], "missing_evidence": [], "restrictions": [],
                "decision": "unavailable", "primary_reason": "insufficient_evidence", "reason_codes": ["insufficient_evidence"],
                "operator_guidance": [
                    "Provide the target artifact, expected outcome, or a bounded evidence source.",
                    "Narrow the scope to a specific file, function, or observable claim."
                ],
                "evidence_sufficiency": "insufficient", "scope_assessment": "narrow", "profile_alignment": "in_profile",
                "outcome_kind": "unavailable", "failure_class": "backend_unusable_response",
                "failure_code": "claude_code_empty_response", "retryable": true, "fallback_recommended": true,
                "verification_performed": false
            })
        );
    }
}
