//! What a run may spend and what it did spend (`docs/reference/tools.md#18-budgets-and-models`):
//! the price table, the cost of a usage, the per-call model and effort, and the budget a run
//! is held to.
//!
//! Prices are US dollars per million tokens. A model is priced by the longest entry of the
//! table that is a prefix of its id (`claude-sonnet-4` prices `claude-sonnet-4-6` and
//! `claude-sonnet-4-5-20250929`); a model no entry matches has no known price, so a USD budget
//! for it is refused rather than left unenforced.

use std::fmt;

use serde::Serialize;

use crate::ports::Usage;

/// Prices of one model, in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prices {
    pub input: f64,
    pub output: f64,
    /// A write to the prompt cache (five-minute breakpoints): 1.25 × `input` unless given.
    pub cache_write: f64,
    /// A read from the prompt cache: 0.1 × `input` unless given.
    pub cache_read: f64,
}

impl Prices {
    /// Input and output prices, cache prices derived as the API documents them.
    pub const fn new(input: f64, output: f64) -> Self {
        Self {
            input,
            output,
            cache_write: input * 1.25,
            cache_read: input * 0.1,
        }
    }

    /// The cost of `usage` at these prices, in USD.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let per_token = |tokens: u64, price: f64| tokens as f64 * price / 1_000_000.0;
        per_token(usage.input_tokens, self.input)
            + per_token(usage.output_tokens, self.output)
            + per_token(
                usage.cache_creation_input_tokens.unwrap_or(0),
                self.cache_write,
            )
            + per_token(usage.cache_read_input_tokens.unwrap_or(0), self.cache_read)
    }
}

/// The default price table: model id prefix, prices, and whether the model takes an `effort`.
/// Operators extend or override it with `CLAUDE_AGENT_MCP_MODEL_PRICES`.
const DEFAULT_MODELS: &[(&str, Prices, bool)] = &[
    ("claude-opus-4-6", Prices::new(5.0, 25.0), true),
    ("claude-opus-4-5", Prices::new(5.0, 25.0), true),
    ("claude-opus-4-1", Prices::new(15.0, 75.0), false),
    ("claude-opus-4", Prices::new(15.0, 75.0), false),
    ("claude-sonnet-4-6", Prices::new(3.0, 15.0), true),
    ("claude-sonnet-4", Prices::new(3.0, 15.0), false),
    ("claude-3-7-sonnet", Prices::new(3.0, 15.0), false),
    ("claude-haiku-4-5", Prices::new(1.0, 5.0), false),
    ("claude-3-5-haiku", Prices::new(0.8, 4.0), false),
    ("claude-3-haiku", Prices::new(0.25, 1.25), false),
];

/// The most entries an operator's price list may have.
pub const MAX_PRICE_ENTRIES: usize = 64;

/// The longest model id a request or the configuration may name, in bytes.
pub const MAX_MODEL_ID_BYTES: usize = 128;

/// Why `model` is not a model id a request or the configuration may name: 1 to
/// [`MAX_MODEL_ID_BYTES`] bytes of letters, digits and `-_.:@/`, not starting with `-` (it is
/// the value of the Claude Code CLI's `--model` and must not pass for an option).
pub fn model_id_problem(model: &str) -> Option<String> {
    if model.is_empty() || model.len() > MAX_MODEL_ID_BYTES {
        return Some(format!("must be 1 to {MAX_MODEL_ID_BYTES} bytes long"));
    }
    if model.starts_with('-') {
        return Some("must not start with '-'".to_owned());
    }
    (!model
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:@/".contains(&b)))
    .then(|| "may hold only letters, digits and '-_.:@/'".to_owned())
}

/// Model id prefixes and their prices (the defaults, then the operator's entries).
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    entries: Vec<(String, Prices)>,
}

impl Default for PriceTable {
    fn default() -> Self {
        Self {
            entries: DEFAULT_MODELS
                .iter()
                .map(|(prefix, prices, _)| ((*prefix).to_owned(), *prices))
                .collect(),
        }
    }
}

impl PriceTable {
    /// The defaults with `overrides` on top (an entry for a prefix the defaults have replaces
    /// it).
    pub fn with_overrides(overrides: impl IntoIterator<Item = (String, Prices)>) -> Self {
        let mut table = Self::default();
        for (prefix, prices) in overrides {
            table.entries.retain(|(known, _)| *known != prefix);
            table.entries.push((prefix, prices));
        }
        table
    }

    /// The prices of `model`: the longest matching prefix.
    pub fn prices(&self, model: &str) -> Option<Prices> {
        longest_prefix(&self.entries, model, |(prefix, _)| prefix).map(|(_, prices)| *prices)
    }
}

/// Whether `model` accepts an `effort` (the models of the default table that take one).
pub fn supports_effort(model: &str) -> bool {
    longest_prefix(DEFAULT_MODELS, model, |(prefix, _, _)| prefix).is_some_and(|(_, _, e)| *e)
}

/// The entry of `table` whose prefix (`prefix_of`) is the longest one `model` starts with.
fn longest_prefix<'t, T>(
    table: &'t [T],
    model: &str,
    prefix_of: impl Fn(&T) -> &str,
) -> Option<&'t T> {
    table
        .iter()
        .filter(|entry| model.starts_with(prefix_of(entry)))
        .max_by_key(|entry| prefix_of(entry).len())
}

crate::model::string_enum! {
    /// How much effort the model puts into its answer (`output_config.effort` of the Messages
    /// API, `--effort` of the Claude Code CLI).
    Effort {
        Low => "low",
        Medium => "medium",
        High => "high",
        Xhigh => "xhigh",
        Max => "max",
    }
}

/// The limits one execution is held to (the request's, lowered to the operator's caps).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Budget {
    /// The most the execution may cost, in USD.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_usd: Option<f64>,
    /// The most tokens (input, output, cache reads and writes together) it may use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_total_tokens: Option<u64>,
}

/// One of a budget's two limits: the argument that sets it and the name warnings give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `max_budget_usd`: [`Budget::max_usd`].
    Usd,
    /// `max_total_tokens`: [`Budget::max_total_tokens`].
    Tokens,
}

impl Limit {
    /// The request argument, as tools, errors and warnings name it.
    pub const fn name(self) -> &'static str {
        match self {
            Limit::Usd => "max_budget_usd",
            Limit::Tokens => "max_total_tokens",
        }
    }

    /// The limit's value in `budget` as warnings show it (`$0.5`, `1000`); empty when unset.
    fn shown(self, budget: &Budget) -> String {
        match self {
            Limit::Usd => budget.max_usd.map(|v| format!("${v}")),
            Limit::Tokens => budget.max_total_tokens.map(|v| v.to_string()),
        }
        .unwrap_or_default()
    }
}

/// An operator's caps of one profile (`CLAUDE_AGENT_MCP_MAX_BUDGET_USD`,
/// `CLAUDE_AGENT_MCP_MAX_TOTAL_TOKENS`).
pub type BudgetCaps = Budget;

/// The largest `max_budget_usd` a request or an operator may give.
pub const MAX_BUDGET_USD: f64 = 1_000_000.0;

/// The largest `max_total_tokens` a request or an operator may give.
pub const MAX_TOTAL_TOKENS: u64 = 1_000_000_000_000;

impl Budget {
    /// The request's limits lowered to `caps`: a cap applies when the request gives no limit
    /// and wins when it is lower. The second value names each limit a cap lowered.
    pub fn within(self, caps: &BudgetCaps) -> (Budget, Vec<Limit>) {
        fn lower<T: PartialOrd>(asked: Option<T>, cap: Option<T>) -> (Option<T>, bool) {
            match (asked, cap) {
                (Some(asked), Some(cap)) if cap < asked => (Some(cap), true),
                (asked, cap) => (asked.or(cap), false),
            }
        }
        let (max_usd, usd_lowered) = lower(self.max_usd, caps.max_usd);
        let (max_total_tokens, tokens_lowered) =
            lower(self.max_total_tokens, caps.max_total_tokens);
        let lowered = [(usd_lowered, Limit::Usd), (tokens_lowered, Limit::Tokens)]
            .into_iter()
            .filter_map(|(lowered, limit)| lowered.then_some(limit))
            .collect();
        (
            Budget {
                max_usd,
                max_total_tokens,
            },
            lowered,
        )
    }

    /// Whether one more model call may be made after `spent` (the execution's usage and cost
    /// so far), when the last call used `last` and the next one adds `added_bytes` of new
    /// input (the tool results): the next call re-sends at least what the last one read and
    /// wrote, so it is estimated as the last call, plus its output and the new input read as
    /// input at a token per [`BYTES_PER_TOKEN_ESTIMATE`] bytes (more tokens than the usual four
    /// bytes each: the estimate errs high). `None`: go on; `Some`: the warning to stop with.
    pub fn before_next_call(
        &self,
        spent: &Usage,
        last: &Usage,
        added_bytes: usize,
        input_price_per_token: Option<f64>,
    ) -> Option<String> {
        let added = (added_bytes as u64)
            .div_ceil(BYTES_PER_TOKEN_ESTIMATE)
            .saturating_add(last.output_tokens);
        if let Some(max) = self.max_total_tokens {
            let next = last.tokens().saturating_add(added);
            if spent.tokens().saturating_add(next) > max {
                return Some(budget_warning(self, spent, Limit::Tokens, STOPPED));
            }
        }
        if let Some(max) = self.max_usd {
            let next = cost(last) + added as f64 * input_price_per_token.unwrap_or(0.0);
            if cost(spent) + next > max {
                return Some(budget_warning(self, spent, Limit::Usd, STOPPED));
            }
        }
        None
    }

    /// Whether `spent` passed a limit (a call cost more than its estimate, or the first call
    /// alone did): the warning the execution ends with.
    pub fn exceeded(&self, spent: &Usage) -> Option<String> {
        if self
            .max_total_tokens
            .is_some_and(|max| spent.tokens() > max)
        {
            return Some(budget_warning(self, spent, Limit::Tokens, PASSED));
        }
        if self.max_usd.is_some_and(|max| cost(spent) > max) {
            return Some(budget_warning(self, spent, Limit::Usd, PASSED));
        }
        None
    }
}

/// The beginning of the warning an execution stopped by its budget ends with.
pub const BUDGET_STOP_PREFIX: &str = "Budget reached";

/// Bytes of new input counted as one token when the next call is estimated (fewer than the
/// usual four, so the estimate errs high).
pub const BYTES_PER_TOKEN_ESTIMATE: u64 = 3;

const STOPPED: &str = "stopped before the next model call";
const PASSED: &str = "the last model call went past it";

/// `Budget reached (<limit> <value>): <what>; spent $<usd> and <n> tokens; the output may be
/// incomplete`, `<what>` being `stopped before the next model call` or `the last model call
/// went past it`.
/// What `usage` cost: none priced is nothing spent.
fn cost(usage: &Usage) -> f64 {
    usage.total_cost_usd.unwrap_or(0.0)
}

fn budget_warning(budget: &Budget, spent: &Usage, limit: Limit, what: &str) -> String {
    let (value, limit) = (limit.shown(budget), limit.name());
    format!(
        "{BUDGET_STOP_PREFIX} ({limit} {value}): {what}; spent ${} and {} tokens; the output \
         may be incomplete",
        Usd(cost(spent)),
        spent.tokens()
    )
}

/// A dollar amount with six decimals (a millionth of a dollar is below any price's step).
pub struct Usd(pub f64);

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6}", self.0)
    }
}

/// What a backend needs to price and bound an execution: the model it calls, its effort, the
/// budget and the prices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallSettings {
    /// The model of this execution; `None`: the backend's configured model.
    pub model: Option<String>,
    pub effort: Option<Effort>,
    pub budget: Budget,
}

/// The operator's spending policy: caps per profile, the model allowlist, the prices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpendPolicy {
    /// Caps of the `general` profile.
    pub general: BudgetCaps,
    /// Caps of the `verification` profile.
    pub verification: BudgetCaps,
    /// The configured model (`CLAUDE_AGENT_MCP_MODEL`); empty: the backend's own default.
    pub default_model: String,
    /// Models a request may choose besides the configured one
    /// (`CLAUDE_AGENT_MCP_ALLOWED_MODELS`).
    pub allowed_models: Vec<String>,
    pub prices: PriceTable,
}

/// Why a request's spending settings were refused: the error code and its message.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendRefusal {
    pub code: crate::error::ErrorCode,
    pub message: String,
}

impl SpendPolicy {
    pub fn caps(&self, profile: crate::model::Profile) -> &BudgetCaps {
        match profile {
            crate::model::Profile::General => &self.general,
            crate::model::Profile::Verification => &self.verification,
        }
    }

    /// The settings of one execution of `profile`: the model (allowlisted), the effort (where
    /// the model takes one), the budget lowered to the caps (with a warning per lowered
    /// limit). `prices_calls`: the backend prices and bounds each model call itself (the
    /// Messages API), so a USD budget needs a price and a token budget can be held; otherwise
    /// (the Claude Code CLI) a USD budget is the CLI's own and a token budget cannot be held.
    pub fn settle(
        &self,
        profile: crate::model::Profile,
        request: &crate::request::SpendRequest,
        prices_calls: bool,
    ) -> Result<(CallSettings, Vec<String>), SpendRefusal> {
        use crate::error::ErrorCode;
        let refuse = |code, message: String| Err(SpendRefusal { code, message });
        if let Some(model) = &request.model
            && *model != self.default_model
            && !self.allowed_models.iter().any(|allowed| allowed == model)
        {
            let mut allowed: Vec<&str> = Vec::with_capacity(self.allowed_models.len() + 1);
            if !self.default_model.is_empty() {
                allowed.push(&self.default_model);
            }
            allowed.extend(self.allowed_models.iter().map(String::as_str));
            return refuse(
                ErrorCode::PolicyDenied,
                format!(
                    "model {} is not allowed by the operator; allowed models: {}",
                    crate::pyfmt::repr_str(model),
                    crate::pyfmt::list(allowed)
                ),
            );
        }
        let model = request
            .model
            .as_deref()
            .unwrap_or(&self.default_model)
            .to_owned();
        if let Some(effort) = request.effort
            && !model.is_empty()
            && !supports_effort(&model)
        {
            return refuse(
                ErrorCode::ValidationError,
                format!(
                    "effort {} is not supported by model {}",
                    crate::pyfmt::repr_str(effort.as_str()),
                    crate::pyfmt::repr_str(&model)
                ),
            );
        }
        let (budget, lowered) = request.budget.within(self.caps(profile));
        if !prices_calls && budget.max_total_tokens.is_some() {
            return refuse(
                ErrorCode::ValidationError,
                format!(
                    "{} cannot be enforced by the claude_code backend; use {}",
                    Limit::Tokens.name(),
                    Limit::Usd.name()
                ),
            );
        }
        if prices_calls && budget.max_usd.is_some() && self.prices.prices(&model).is_none() {
            return refuse(
                ErrorCode::ValidationError,
                format!(
                    "{} cannot be enforced: no price is known for model {} \
                     (the operator can add one with CLAUDE_AGENT_MCP_MODEL_PRICES)",
                    Limit::Usd.name(),
                    crate::pyfmt::repr_str(&model)
                ),
            );
        }
        let warnings = lowered
            .into_iter()
            .map(|limit| {
                format!(
                    "{} lowered to the operator's cap of {} for profile '{}'",
                    limit.name(),
                    limit.shown(&budget),
                    profile.as_str()
                )
            })
            .collect();
        Ok((
            CallSettings {
                model: request.model.clone(),
                effort: request.effort,
                budget,
            },
            warnings,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64, write: u64, read: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cache_creation_input_tokens: Some(write),
            cache_read_input_tokens: Some(read),
            total_cost_usd: None,
        }
    }

    #[test]
    fn the_longest_prefix_prices_a_model() {
        let table = PriceTable::default();
        assert_eq!(table.prices("claude-opus-4-6").unwrap().input, 5.0);
        assert_eq!(table.prices("claude-opus-4-20250514").unwrap().input, 15.0);
        assert_eq!(table.prices("claude-sonnet-4-6").unwrap().output, 15.0);
        assert!(table.prices("gpt-4").is_none());
        assert!(table.prices("").is_none());
    }

    #[test]
    fn cost_follows_the_cache_multipliers() {
        let prices = Prices::new(3.0, 15.0);
        let cost = prices.cost(&usage(1_000_000, 1_000_000, 1_000_000, 1_000_000));
        assert!((cost - (3.0 + 15.0 + 3.75 + 0.3)).abs() < 1e-9, "{cost}");
    }

    #[test]
    fn operator_entries_override_and_extend() {
        let table = PriceTable::with_overrides([
            ("claude-sonnet-4".to_owned(), Prices::new(1.0, 2.0)),
            ("local-model".to_owned(), Prices::new(0.5, 0.5)),
        ]);
        assert_eq!(table.prices("claude-sonnet-4-5").unwrap().input, 1.0);
        // A longer default entry still wins over a shorter operator one.
        assert_eq!(table.prices("claude-sonnet-4-6").unwrap().input, 3.0);
        assert_eq!(table.prices("local-model-x").unwrap().output, 0.5);
    }

    #[test]
    fn a_lower_cap_wins_and_a_cap_applies_when_nothing_is_asked() {
        let caps = Budget {
            max_usd: Some(1.0),
            max_total_tokens: None,
        };
        let asked = Budget {
            max_usd: Some(5.0),
            max_total_tokens: Some(10),
        };
        let (effective, lowered) = asked.within(&caps);
        assert_eq!(effective.max_usd, Some(1.0));
        assert_eq!(effective.max_total_tokens, Some(10));
        assert_eq!(lowered, vec![Limit::Usd]);
        let (effective, lowered) = Budget::default().within(&caps);
        assert_eq!(effective.max_usd, Some(1.0));
        assert!(lowered.is_empty());
        let (effective, _) = Budget {
            max_usd: Some(0.5),
            max_total_tokens: None,
        }
        .within(&caps);
        assert_eq!(effective.max_usd, Some(0.5));
    }

    #[test]
    fn the_next_call_is_refused_when_it_would_pass_the_budget() {
        let budget = Budget {
            max_usd: None,
            max_total_tokens: Some(1000),
        };
        let last = usage(300, 50, 0, 0);
        let mut spent = last.clone();
        assert_eq!(budget.before_next_call(&spent, &last, 0, None), None);
        // Large tool results count: 900 bytes are 300 tokens more.
        assert!(budget.before_next_call(&spent, &last, 900, None).is_some());
        spent.add(&last);
        let warning = budget.before_next_call(&spent, &last, 0, None).unwrap();
        assert!(
            warning.starts_with("Budget reached (max_total_tokens 1000)"),
            "{warning}"
        );
        assert!(warning.contains("700 tokens"), "{warning}");
    }

    #[test]
    fn effort_is_known_per_model() {
        assert!(supports_effort("claude-opus-4-6"));
        assert!(!supports_effort("claude-haiku-4-5"));
        assert!(!supports_effort("unknown"));
        assert_eq!(Effort::parse("xhigh"), Some(Effort::Xhigh));
        assert_eq!(Effort::parse("extreme"), None);
    }
}
