//! Verdict parsing (`docs/reference/verification.md#4-verdict-parsing`): a pure function of the
//! model's text.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use crate::model::string_enum;

string_enum! {
    /// The four verification verdicts.
    Verdict {
        Pass => "pass",
        PassWithRestrictions => "pass_with_restrictions",
        FailClosed => "fail_closed",
        InsufficientEvidence => "insufficient_evidence",
    }
}

/// What the parser extracts from the output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParsedVerdict {
    pub verdict: Verdict,
    pub findings: Vec<String>,
    pub contradictions: Vec<String>,
    pub missing_evidence: Vec<String>,
    pub restrictions: Vec<String>,
}

#[allow(clippy::expect_used)] // the patterns are constants, checked by the tests below
fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("constant regex")
}

static VERDICT_RE: LazyLock<Regex> = LazyLock::new(|| regex(r"(?i)VERDICT\s*:\s*(\S+)"));
static BULLET_RE: LazyLock<Regex> = LazyLock::new(|| regex(r"[-*•]\s*(.+)"));
static SECTION_RES: LazyLock<[Regex; 4]> = LazyLock::new(|| {
    [
        "FINDINGS",
        "CONTRADICTIONS",
        "MISSING_EVIDENCE",
        "RESTRICTIONS",
    ]
    .map(|label| regex(&format!(r"(?i){label}\s*:\s*\n((?:\s*[-*•]\s*.+\n?)*)")))
});

fn map_token(token: &str) -> Option<Verdict> {
    let lower = token.to_lowercase();
    match lower.trim_end_matches('.') {
        "pass" => Some(Verdict::Pass),
        "pass_with_restrictions" => Some(Verdict::PassWithRestrictions),
        "fail_closed" | "fail" => Some(Verdict::FailClosed),
        "insufficient_evidence" | "insufficient" => Some(Verdict::InsufficientEvidence),
        _ => None,
    }
}

fn section(text: &str, re: &Regex) -> Vec<String> {
    let Some(block) = re.captures(text).and_then(|c| c.get(1)) else {
        return Vec::new();
    };
    BULLET_RE
        .captures_iter(block.as_str())
        .filter_map(|c| c.get(1))
        .map(|m| m.as_str().trim())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parses a verification output. With no recognisable verdict the result is `fail_closed`
/// when `fail_closed` is set, `insufficient_evidence` otherwise.
pub fn parse_verdict(text: &str, fail_closed: bool) -> ParsedVerdict {
    let verdict = VERDICT_RE
        .captures(text)
        .and_then(|c| c.get(1))
        .and_then(|m| map_token(m.as_str()))
        .unwrap_or(if fail_closed {
            Verdict::FailClosed
        } else {
            Verdict::InsufficientEvidence
        });
    let [findings, contradictions, missing, restrictions] = &*SECTION_RES;
    ParsedVerdict {
        verdict,
        findings: section(text, findings),
        contradictions: section(text, contradictions),
        missing_evidence: section(text, missing),
        restrictions: section(text, restrictions),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_table() {
        let cases: &[(&str, bool, Verdict)] = &[
            ("VERDICT: pass", true, Verdict::Pass),
            (
                "VERDICT: pass_with_restrictions",
                false,
                Verdict::PassWithRestrictions,
            ),
            ("VERDICT: fail_closed", false, Verdict::FailClosed),
            ("VERDICT: FAIL.", true, Verdict::FailClosed),
            (
                "verdict : Insufficient",
                true,
                Verdict::InsufficientEvidence,
            ),
            (
                "VERDICT: insufficient_evidence",
                true,
                Verdict::InsufficientEvidence,
            ),
            ("VERDICT:\n  pass", true, Verdict::Pass),
            ("no verdict here", true, Verdict::FailClosed),
            ("no verdict here", false, Verdict::InsufficientEvidence),
            ("VERDICT: maybe", false, Verdict::InsufficientEvidence),
            ("", true, Verdict::FailClosed),
        ];
        for (text, fc, want) in cases {
            assert_eq!(parse_verdict(text, *fc).verdict, *want, "{text:?}");
        }
    }

    #[test]
    fn lists_are_collected_per_label() {
        let text = "VERDICT: pass_with_restrictions\nFINDINGS:\n- a\n* b\n\nCONTRADICTIONS:\n- c\nMISSING_EVIDENCE:\nRESTRICTIONS:\n• only on linux\n";
        let parsed = parse_verdict(text, true);
        assert_eq!(
            parsed,
            ParsedVerdict {
                verdict: Verdict::PassWithRestrictions,
                findings: vec!["a".into(), "b".into()],
                contradictions: vec!["c".into()],
                missing_evidence: vec![],
                restrictions: vec!["only on linux".into()],
            }
        );
    }

    /// Property: over many random texts built from the tokens the parser looks for, it never
    /// panics, always yields a verdict, and never yields an empty list item.
    #[test]
    fn random_text_never_panics() {
        const PIECES: [&str; 24] = [
            "VERDICT",
            "verdict",
            ":",
            " ",
            "\n",
            "\r\n",
            "\t",
            "-",
            "*",
            "•",
            "pass",
            "fail.",
            "FAIL",
            "insufficient",
            "pass_with_restrictions",
            "FINDINGS",
            "CONTRADICTIONS",
            "MISSING_EVIDENCE",
            "RESTRICTIONS",
            "é",
            "\u{0}",
            "🦀",
            ".",
            "x",
        ];
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        for _ in 0..20_000 {
            let len = rng.usize(0..40);
            let text: String = (0..len)
                .map(|_| PIECES[rng.usize(..PIECES.len())])
                .collect();
            let parsed = parse_verdict(&text, rng.bool());
            let lists = [
                &parsed.findings,
                &parsed.contradictions,
                &parsed.missing_evidence,
                &parsed.restrictions,
            ];
            assert!(
                lists
                    .iter()
                    .all(|l| l.iter().all(|item| !item.is_empty() && item.trim() == item)),
                "{text:?}"
            );
        }
    }

    #[test]
    fn never_panics_on_odd_text() {
        for text in [
            "VERDICT:",
            "FINDINGS:\n-",
            "VERDICT: é.",
            "\u{0}\u{ffff}",
            "FINDINGS:\n- \n- x",
        ] {
            let _ = parse_verdict(text, true);
        }
        // `\s*` after a bullet may cross a newline, exactly as in the original's regex
        // (`docs/reference/verification.md#4-verdict-parsing`).
        assert_eq!(
            parse_verdict("FINDINGS:\n- \n- x", true).findings,
            vec!["- x".to_owned()]
        );
    }
}
