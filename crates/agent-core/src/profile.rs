//! Execution profiles (`docs/reference/policy.md#1-profiles`): system prompts and turn caps.

use crate::model::Profile;

/// The verification output-format block, as a literal so the prompt can embed it.
macro_rules! output_format {
    () => {
        "Output format:
Your final response must contain a structured verification result with:
VERDICT: <verdict>
FINDINGS:
- <finding>
CONTRADICTIONS:
- <contradiction>
MISSING_EVIDENCE:
- <item>
RESTRICTIONS:
- <restriction>"
    };
}

/// The verification output-format block; the verdict parser depends on these labels.
pub const VERIFICATION_OUTPUT_FORMAT: &str = output_format!();

const GENERAL_PROMPT: &str = "You are a helpful, capable and bounded agent running inside a sessioned runtime with controlled tool access. Complete the task accurately and concisely.

Rules:
- Stay within the scope of the task.
- Do not access resources outside the working directory unless explicitly authorised.
- Return a clear, structured result that summarises what was done.
- If the task cannot be completed, explain why.";

const VERIFICATION_PROMPT: &str = concat!(
    "You are a precise verification agent. You evaluate evidence and decide whether the stated task or claim is supported.

Rules:
- READ-ONLY mode: do not write, create or modify any files.
- Base your verdict only on the provided evidence; do not infer facts that are not in evidence.
- State explicitly when evidence is missing or insufficient.
- The verdict is exactly one of: pass, pass_with_restrictions, fail_closed, insufficient_evidence.
- List findings, contradictions, missing evidence and restrictions.
- Fail closed when uncertain: insufficient evidence defaults to fail_closed unless explicitly stated otherwise.

",
    output_format!()
);

impl Profile {
    /// The profile's system prompt.
    pub const fn system_prompt(self) -> &'static str {
        match self {
            Profile::General => GENERAL_PROMPT,
            Profile::Verification => VERIFICATION_PROMPT,
        }
    }

    /// Default `max_turns` when a request gives none.
    pub const fn max_turns_default(self) -> u32 {
        match self {
            Profile::General => 10,
            Profile::Verification => 5,
        }
    }

    /// The cap a requested `max_turns` is silently clamped to.
    pub const fn max_turns_cap(self) -> u32 {
        match self {
            Profile::General => 50,
            Profile::Verification => 20,
        }
    }

    /// `min(requested, cap)`.
    pub fn effective_max_turns(self, requested: u32) -> u32 {
        requested.min(self.max_turns_cap())
    }

    /// Read-only profiles get no writing tools.
    pub const fn read_only(self) -> bool {
        match self {
            Profile::General => false,
            Profile::Verification => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_prompts() {
        assert_eq!(Profile::General.effective_max_turns(75), 50);
        assert_eq!(Profile::Verification.effective_max_turns(30), 20);
        assert_eq!(Profile::General.effective_max_turns(3), 3);
        assert!(
            Profile::Verification
                .system_prompt()
                .ends_with(VERIFICATION_OUTPUT_FORMAT)
        );
    }
}
