//! A session's summed usage as both stores keep it: five `sessions` columns
//! (`usage_input_tokens`, `usage_output_tokens`, `usage_cache_creation_input_tokens`,
//! `usage_cache_read_input_tokens`, `usage_cost_usd`; SQLite migration `0007`, PostgreSQL
//! migration `0005`), added to by each execution's final write.

use agent_core::Usage;

/// The `SET` items of a final write that add one execution's usage ([`Columns`], bound at the
/// five placeholders given, typed where PostgreSQL needs it) to the session's: the token counts
/// always; a cache count or the cost only when the execution reported one, so a session none
/// of whose executions did keeps none. A literal for `concat!`.
macro_rules! add_usage {
    ($input:literal, $output:literal, $creation:literal, $read:literal, $cost:literal) => {
        concat!(
            "usage_input_tokens = usage_input_tokens + ",
            $input,
            ", usage_output_tokens = usage_output_tokens + ",
            $output,
            ", usage_cache_creation_input_tokens = CASE WHEN ",
            $creation,
            " IS NULL THEN usage_cache_creation_input_tokens \
             ELSE COALESCE(usage_cache_creation_input_tokens, 0) + ",
            $creation,
            " END, usage_cache_read_input_tokens = CASE WHEN ",
            $read,
            " IS NULL THEN usage_cache_read_input_tokens \
             ELSE COALESCE(usage_cache_read_input_tokens, 0) + ",
            $read,
            " END, usage_cost_usd = CASE WHEN ",
            $cost,
            " IS NULL THEN usage_cost_usd ELSE COALESCE(usage_cost_usd, 0) + ",
            $cost,
            " END"
        )
    };
}
pub(crate) use add_usage;

/// One execution's usage as the bind values of the final write; each count and the cost are
/// capped ([`count`], [`MAX_EXECUTION_COST_USD`]).
pub(crate) struct Columns {
    pub input: i64,
    pub output: i64,
    pub cache_creation: Option<i64>,
    pub cache_read: Option<i64>,
    pub cost_usd: Option<f64>,
}

/// The most tokens of one kind one execution adds ([`agent_core::spend::MAX_TOTAL_TOKENS`]): a
/// provider's absurd count cannot overflow the session's sum (a million such executions fit).
fn count(n: u64) -> i64 {
    i64::try_from(n.min(agent_core::spend::MAX_TOTAL_TOKENS)).unwrap_or(i64::MAX)
}

/// The most cost one execution adds, in USD.
const MAX_EXECUTION_COST_USD: f64 = 1e9;

impl Columns {
    pub(crate) fn of(usage: Option<&Usage>) -> Self {
        match usage {
            None => Self {
                input: 0,
                output: 0,
                cache_creation: None,
                cache_read: None,
                cost_usd: None,
            },
            Some(u) => Self {
                input: count(u.input_tokens),
                output: count(u.output_tokens),
                cache_creation: u.cache_creation_input_tokens.map(count),
                cache_read: u.cache_read_input_tokens.map(count),
                cost_usd: u
                    .total_cost_usd
                    .filter(|c| c.is_finite() && *c >= 0.0)
                    .map(|c| c.min(MAX_EXECUTION_COST_USD)),
            },
        }
    }
}

/// The stored columns as a [`Usage`] (a negative count or cost, or a cost that is not a
/// number, which no write makes, reads as 0 or none).
pub(crate) fn from_columns(
    input: i64,
    output: i64,
    cache_creation: Option<i64>,
    cache_read: Option<i64>,
    cost_usd: Option<f64>,
) -> Usage {
    let tokens = |n: i64| u64::try_from(n).unwrap_or(0);
    Usage {
        input_tokens: tokens(input),
        output_tokens: tokens(output),
        cache_creation_input_tokens: cache_creation.map(tokens),
        cache_read_input_tokens: cache_read.map(tokens),
        total_cost_usd: cost_usd.filter(|c| c.is_finite() && *c >= 0.0),
    }
}
