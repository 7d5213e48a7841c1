//! Helpers for the workspace's tests (not used by the server itself).

/// How many cases each property of the property-based campaign runs by default: thousands
/// per surface in CI while the whole campaign stays well under a minute in a debug build.
pub const DEFAULT_PROPTEST_CASES: u32 = 1024;

/// The test-only variable that sets the case count of every property (for a long local run,
/// e.g. `CLAUDE_AGENT_MCP_PROPTEST_CASES=100000`). Not a server setting: the server never
/// reads it, so it is not in `agent_policy::config`.
pub const PROPTEST_CASES_VAR: &str = "CLAUDE_AGENT_MCP_PROPTEST_CASES";

/// The case count for one property: `CLAUDE_AGENT_MCP_PROPTEST_CASES` when it is a positive
/// integer, else [`DEFAULT_PROPTEST_CASES`]; divided by `cost` (at least 1 case) for a
/// property whose cases are expensive (a database write per case), so one variable scales
/// every property together.
pub fn proptest_cases(cost: u32) -> u32 {
    let base = std::env::var(PROPTEST_CASES_VAR)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_PROPTEST_CASES);
    (base / cost.max(1)).max(1)
}
