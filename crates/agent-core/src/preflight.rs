//! Verification preflight and reason taxonomy (`docs/reference/verification.md#5-preflight`,
//! `docs/reference/verification.md#6-reason-taxonomy`): deterministic
//! heuristics over the request, lint codes, operator guidance and the assessment mapping.
//! Pure functions; table-tested below.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use crate::model::string_enum;
use crate::verdict::Verdict;

/// The reason taxonomy (`docs/reference/verification.md#61-codes`): the two evidence reasons
/// and the six preflight lint codes. A lint code is the string of its error code
/// ([`ReasonCode::error_code`]): `crate::error::ErrorCode` owns those strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    SufficientEvidence,
    InsufficientEvidence,
    ScopeTooBroad,
    AmbiguousRequest,
    MissingRequiredContext,
    NonVerifiableRequest,
    OutOfProfileRequest,
    RestrictedModeMismatch,
}

impl ReasonCode {
    /// The contract string.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReasonCode::SufficientEvidence => "sufficient_evidence",
            ReasonCode::InsufficientEvidence => "insufficient_evidence",
            lint => lint.error_code().as_str(),
        }
    }

    /// The operator guidance strings of this code, in order
    /// (`docs/reference/verification.md#62-guidance-strings`).
    pub const fn guidance(self) -> [&'static str; 2] {
        match self {
            ReasonCode::SufficientEvidence => [
                "Evidence supports the claim. Review findings for any noted restrictions.",
                "",
            ],
            ReasonCode::InsufficientEvidence => [
                "Provide the target artifact, expected outcome, or a bounded evidence source.",
                "Narrow the scope to a specific file, function, or observable claim.",
            ],
            ReasonCode::ScopeTooBroad => [
                "Narrow the request to one artifact, one claim, or one verification objective.",
                "Example: \"Verify whether <specific file> satisfies <specific condition>\".",
            ],
            ReasonCode::OutOfProfileRequest => [
                "This request exceeds the active verification profile.",
                "Handle execution-oriented requests outside restricted verification mode.",
            ],
            ReasonCode::RestrictedModeMismatch => [
                "The active APNTalk verification mode only permits bounded advisory verification tasks.",
                "Reframe the request as a specific, observable claim to verify against existing evidence.",
            ],
            ReasonCode::MissingRequiredContext => [
                "Specify the target artifact, evidence path, or expected state to verify against.",
                "Include at least one concrete named subject for the verification claim.",
            ],
            ReasonCode::NonVerifiableRequest => [
                "This request cannot be answered through passive evidence review.",
                "Restrict the request to observable properties of existing artifacts.",
            ],
            ReasonCode::AmbiguousRequest => [
                "Clarify the verification objective with a single, specific claim.",
                "Specify what passing looks like and which artifact is the subject.",
            ],
        }
    }

    /// The error code under which this reason appears in `errors[]` (preflight blocks).
    pub const fn error_code(self) -> crate::error::ErrorCode {
        use crate::error::ErrorCode;
        match self {
            ReasonCode::ScopeTooBroad => ErrorCode::ScopeTooBroad,
            ReasonCode::AmbiguousRequest => ErrorCode::AmbiguousRequest,
            ReasonCode::MissingRequiredContext => ErrorCode::MissingRequiredContext,
            ReasonCode::NonVerifiableRequest => ErrorCode::NonVerifiableRequest,
            ReasonCode::OutOfProfileRequest => ErrorCode::OutOfProfileRequest,
            ReasonCode::RestrictedModeMismatch => ErrorCode::RestrictedModeMismatch,
            // Evidence reasons are never lint codes; they have no error of their own.
            ReasonCode::SufficientEvidence | ReasonCode::InsufficientEvidence => {
                ErrorCode::InternalError
            }
        }
    }

    /// The guidance strings, without the empty filler of single-string codes.
    pub fn guidance_lines(self) -> impl Iterator<Item = &'static str> {
        self.guidance().into_iter().filter(|g| !g.is_empty())
    }
}

impl Serialize for ReasonCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Guidance for a list of codes: each code's strings in order, de-duplicated.
pub fn operator_guidance(codes: &[ReasonCode]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in codes.iter().flat_map(|c| c.guidance_lines()) {
        if !out.iter().any(|o| o == line) {
            out.push(line.to_owned());
        }
    }
    out
}

const EXECUTION_VERBS: [&str; 20] = [
    "create",
    "write",
    "modify",
    "update",
    "fix",
    "implement",
    "delete",
    "remove",
    "add",
    "install",
    "run",
    "execute",
    "deploy",
    "build",
    "compile",
    "generate",
    "edit",
    "patch",
    "refactor",
    "rewrite",
];

#[allow(clippy::expect_used)] // constant patterns, exercised by the tests below
fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("constant regex")
}

static MULTI_OBJECTIVE: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)\b(?:verify|check|validate|confirm|ensure|test)\b.{5,60}\b(?:and|also)\b.{5,60}\b(?:verify|check|validate|confirm|ensure|test)\b",
    )
});
static BROAD: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)\beverything\b|\bthe whole\b|\bthe entire\b|\ball of it\b|\bthe system\b|\ball files\b|\bthe whole repo(?:sitory)?\b|\bthe entire codebase\b|\breview everything\b|\bcheck everything\b|\bvalidate everything\b",
    )
});
static WORD: LazyLock<Regex> = LazyLock::new(|| regex(r"\b\w+\b"));
static TARGET: LazyLock<Regex> =
    LazyLock::new(|| regex(r#"(?i)(?:[./][^\s,;"']+|\b\w[\w\-]*\.\w{1,6}\b)"#));
static QUOTED: LazyLock<Regex> = LazyLock::new(|| regex(r#""[^"]{4,}""#));

fn has_execution_verb(text: &str) -> bool {
    let lower = text.to_lowercase();
    WORD.find_iter(&lower)
        .any(|w| EXECUTION_VERBS.contains(&w.as_str()))
}

/// The preflight of one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preflight {
    pub breadth_score: u32,
    pub targets: Vec<String>,
    pub lint_codes: Vec<ReasonCode>,
    /// Guidance of each lint code, in order (not de-duplicated).
    pub hints: Vec<String>,
    /// False only in restricted mode with `restricted_mode_mismatch`: the request is blocked.
    pub ok: bool,
}

/// `docs/reference/verification.md#51-request-shape` and
/// `docs/reference/verification.md#52-lint-codes`.
pub fn preflight(
    task: &str,
    scope: Option<&str>,
    evidence_paths: &[String],
    restricted: bool,
) -> Preflight {
    let combined = format!("{task} {}", scope.unwrap_or("")).trim().to_owned();
    let mut breadth = 0;
    if MULTI_OBJECTIVE.is_match(&combined) {
        breadth += 1;
    }
    if BROAD.is_match(&combined) {
        breadth += 1;
    }
    if has_execution_verb(&combined) {
        breadth += 1;
    }
    let mut targets: Vec<String> = Vec::new();
    let found = TARGET
        .find_iter(&combined)
        .map(|m| m.as_str())
        .filter(|t| t.chars().count() > 2)
        .chain(QUOTED.find_iter(&combined).map(|m| m.as_str()))
        .chain(evidence_paths.iter().take(5).map(String::as_str));
    for t in found {
        if targets.len() == 8 {
            break;
        }
        if !targets.iter().any(|x| x == t) {
            targets.push(t.to_owned());
        }
    }
    let no_target = targets.is_empty();
    if no_target {
        breadth += 1;
    }
    let mut lint = Vec::new();
    if has_execution_verb(task) {
        lint.push(if restricted {
            ReasonCode::RestrictedModeMismatch
        } else {
            ReasonCode::OutOfProfileRequest
        });
    }
    if breadth >= 2 {
        lint.push(ReasonCode::ScopeTooBroad);
    } else if breadth == 1 && no_target {
        lint.push(ReasonCode::AmbiguousRequest);
    }
    if no_target {
        lint.push(ReasonCode::MissingRequiredContext);
    }
    let hints = lint
        .iter()
        .flat_map(|c| c.guidance_lines())
        .map(str::to_owned)
        .collect();
    let ok = !(restricted && lint.contains(&ReasonCode::RestrictedModeMismatch));
    Preflight {
        breadth_score: breadth,
        targets,
        lint_codes: lint,
        hints,
        ok,
    }
}

string_enum! {
    /// How a verification ended, for routing (`docs/reference/verification.md#63-assessment`,
    /// `docs/reference/verification.md#8-result-shapes`).
    Decision {
        Verified => "verified",
        NotVerified => "not_verified",
        Inconclusive => "inconclusive",
        Unavailable => "unavailable",
    }
}

/// The assessment fields of a result (`docs/reference/verification.md#63-assessment`), in the
/// result's key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assessment {
    pub decision: Decision,
    pub primary_reason: ReasonCode,
    pub reason_codes: Vec<ReasonCode>,
    pub operator_guidance: Vec<String>,
    pub evidence_sufficiency: &'static str,
    pub scope_assessment: &'static str,
    pub profile_alignment: &'static str,
}

fn scope_assessment(lint: &[ReasonCode]) -> &'static str {
    if lint.contains(&ReasonCode::ScopeTooBroad) {
        "too_broad"
    } else if lint.contains(&ReasonCode::AmbiguousRequest) {
        "broad"
    } else if !lint.is_empty() {
        "acceptable"
    } else {
        "narrow"
    }
}

fn profile_alignment(lint: &[ReasonCode]) -> &'static str {
    if lint.contains(&ReasonCode::RestrictedModeMismatch) {
        "restricted_mode_mismatch"
    } else if lint.contains(&ReasonCode::OutOfProfileRequest) {
        "out_of_profile"
    } else {
        "in_profile"
    }
}

/// The assessment of a verdict given the preflight's lint codes.
pub fn assess(verdict: Verdict, lint: &[ReasonCode]) -> Assessment {
    let (decision, evidence, sufficiency) = match verdict {
        Verdict::Pass => (
            Decision::Verified,
            ReasonCode::SufficientEvidence,
            "sufficient",
        ),
        Verdict::PassWithRestrictions => (
            Decision::Verified,
            ReasonCode::SufficientEvidence,
            "partial",
        ),
        Verdict::FailClosed => (
            Decision::NotVerified,
            ReasonCode::InsufficientEvidence,
            "insufficient",
        ),
        Verdict::InsufficientEvidence => (
            Decision::Inconclusive,
            ReasonCode::InsufficientEvidence,
            "insufficient",
        ),
    };
    let mut reason_codes = lint.to_vec();
    if !reason_codes.contains(&evidence) {
        reason_codes.push(evidence);
    }
    Assessment {
        decision,
        primary_reason: lint.first().copied().unwrap_or(evidence),
        operator_guidance: operator_guidance(&reason_codes),
        reason_codes,
        evidence_sufficiency: sufficiency,
        scope_assessment: scope_assessment(lint),
        profile_alignment: profile_alignment(lint),
    }
}

/// The assessment of an unavailable result (`docs/reference/verification.md#84-unavailable`): lint
/// codes only shape the scope and profile fields.
pub fn assess_unavailable(lint: &[ReasonCode]) -> Assessment {
    let codes = [ReasonCode::InsufficientEvidence];
    Assessment {
        decision: Decision::Unavailable,
        primary_reason: ReasonCode::InsufficientEvidence,
        reason_codes: codes.to_vec(),
        operator_guidance: operator_guidance(&codes),
        evidence_sufficiency: "insufficient",
        scope_assessment: scope_assessment(lint),
        profile_alignment: profile_alignment(lint),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReasonCode::*;

    #[test]
    fn reason_codes_are_the_documented_strings() {
        let codes = [
            SufficientEvidence,
            InsufficientEvidence,
            ScopeTooBroad,
            AmbiguousRequest,
            MissingRequiredContext,
            NonVerifiableRequest,
            OutOfProfileRequest,
            RestrictedModeMismatch,
        ];
        let shown: Vec<String> = codes.iter().map(ToString::to_string).collect();
        assert_eq!(
            serde_json::to_value(codes).unwrap(),
            serde_json::json!([
                "sufficient_evidence",
                "insufficient_evidence",
                "scope_too_broad",
                "ambiguous_request",
                "missing_required_context",
                "non_verifiable_request",
                "out_of_profile_request",
                "restricted_mode_mismatch"
            ])
        );
        assert_eq!(
            serde_json::to_value(&shown).unwrap(),
            serde_json::to_value(codes).unwrap()
        );
    }

    fn lint(
        task: &str,
        scope: Option<&str>,
        evidence: &[&str],
        restricted: bool,
    ) -> Vec<ReasonCode> {
        let evidence: Vec<String> = evidence.iter().map(|s| (*s).to_owned()).collect();
        preflight(task, scope, &evidence, restricted).lint_codes
    }

    #[test]
    fn worked_examples_of_the_reference() {
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            &'a [&'a str],
            bool,
            &'a [ReasonCode],
        );
        let cases: &[Case] = &[
            (
                "Verify /data/report.txt satisfies expected content",
                None,
                &[],
                false,
                &[],
            ),
            (
                "Verify the report",
                None,
                &[],
                false,
                &[AmbiguousRequest, MissingRequiredContext],
            ),
            (
                "Is it correct?",
                None,
                &[],
                false,
                &[AmbiguousRequest, MissingRequiredContext],
            ),
            (
                "Check everything in the whole system",
                None,
                &[],
                false,
                &[ScopeTooBroad, MissingRequiredContext],
            ),
            (
                "Fix the authentication module",
                None,
                &[],
                false,
                &[OutOfProfileRequest, ScopeTooBroad, MissingRequiredContext],
            ),
            (
                "Fix the authentication module",
                None,
                &[],
                true,
                &[
                    RestrictedModeMismatch,
                    ScopeTooBroad,
                    MissingRequiredContext,
                ],
            ),
            ("Verify the claim", Some("src/module.py"), &[], false, &[]),
            (
                "Verify the claim",
                None,
                &["/evidence/report.txt"],
                false,
                &[],
            ),
            (
                "Check that config.yaml has debug off and also verify the logs are rotated",
                None,
                &[],
                false,
                &[],
            ),
            (
                "Verify whether the exposed tool list is exactly the admitted pair",
                None,
                &[],
                true,
                &[AmbiguousRequest, MissingRequiredContext],
            ),
        ];
        for (task, scope, evidence, restricted, want) in cases {
            assert_eq!(lint(task, *scope, evidence, *restricted), *want, "{task:?}");
        }
        assert!(!preflight("Fix it", None, &[], true).ok);
        assert!(preflight("Fix it", None, &[], false).ok);
        assert_eq!(
            preflight("Verify the claim", Some("src/module.py"), &[], false).targets,
            ["/module.py"]
        );
    }

    #[test]
    fn targets_are_deduplicated_and_capped() {
        let p = preflight(
            "Verify a.txt a.txt \"quoted claim\" and/or e.g. 1.5",
            None,
            &[],
            false,
        );
        assert_eq!(
            p.targets,
            ["a.txt", "/or", "e.g", "1.5", "\"quoted claim\""]
        );
        let many: Vec<String> = (0..20).map(|i| format!("/p/{i}")).collect();
        assert_eq!(preflight("Verify", None, &many, false).targets.len(), 5);
    }

    #[test]
    fn assessment_mapping() {
        let a = assess(Verdict::Pass, &[]);
        assert_eq!(
            (
                a.decision,
                a.primary_reason,
                a.reason_codes.clone(),
                a.evidence_sufficiency,
                a.scope_assessment,
                a.profile_alignment
            ),
            (
                Decision::Verified,
                SufficientEvidence,
                vec![SufficientEvidence],
                "sufficient",
                "narrow",
                "in_profile"
            )
        );
        assert_eq!(
            a.operator_guidance,
            ["Evidence supports the claim. Review findings for any noted restrictions."]
        );
        let a = assess(
            Verdict::InsufficientEvidence,
            &[AmbiguousRequest, MissingRequiredContext],
        );
        assert_eq!(a.decision, Decision::Inconclusive);
        assert_eq!(a.primary_reason, AmbiguousRequest);
        assert_eq!(
            a.reason_codes,
            [
                AmbiguousRequest,
                MissingRequiredContext,
                InsufficientEvidence
            ]
        );
        assert_eq!(a.scope_assessment, "broad");
        assert_eq!(a.operator_guidance.len(), 6);
        let a = assess(Verdict::FailClosed, &[OutOfProfileRequest, ScopeTooBroad]);
        assert_eq!(
            (a.scope_assessment, a.profile_alignment),
            ("too_broad", "out_of_profile")
        );
        assert_eq!(
            assess(Verdict::PassWithRestrictions, &[]).evidence_sufficiency,
            "partial"
        );
        let u = assess_unavailable(&[RestrictedModeMismatch]);
        assert_eq!(
            (u.decision, u.reason_codes.clone()),
            (Decision::Unavailable, vec![InsufficientEvidence])
        );
        assert_eq!(u.profile_alignment, "restricted_mode_mismatch");
    }

    #[test]
    fn guidance_is_deduplicated() {
        let g = operator_guidance(&[InsufficientEvidence, InsufficientEvidence]);
        assert_eq!(g.len(), 2);
    }
}
