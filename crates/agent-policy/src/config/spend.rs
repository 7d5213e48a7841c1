//! The spending settings (`docs/configuration.md#budgets-models-and-prices`): budget caps per
//! profile, the model allowlist and the price table, parsed into
//! [`agent_core::spend::SpendPolicy`].

use agent_core::pyfmt;
use agent_core::spend::{
    MAX_BUDGET_USD, MAX_PRICE_ENTRIES, MAX_TOTAL_TOKENS, PriceTable, Prices, SpendPolicy,
    model_id_problem,
};

use super::vars;

/// The highest price per million tokens an operator may give.
const MAX_PRICE_PER_MTOK: f64 = 100_000.0;

/// The raw values of the four variables (each `None` when unset or empty).
pub(super) struct Raw<'a> {
    pub max_budget_usd: Option<&'a str>,
    pub max_total_tokens: Option<&'a str>,
    pub allowed_models: Option<&'a str>,
    pub model_prices: Option<&'a str>,
}

/// The policy, or every problem found.
pub(super) fn parse(raw: &Raw<'_>, model: &str, problems: &mut Vec<String>) -> SpendPolicy {
    let mut policy = SpendPolicy {
        default_model: model.to_owned(),
        ..SpendPolicy::default()
    };
    if let Some(value) = raw.max_budget_usd {
        let caps = per_profile(vars::MAX_BUDGET_USD, value, problems, |text| {
            text.parse::<f64>()
                .ok()
                .filter(|usd| *usd > 0.0 && *usd <= MAX_BUDGET_USD)
                .ok_or_else(|| format!("a number of dollars above 0 and at most {MAX_BUDGET_USD}"))
        });
        policy.general.max_usd = caps.0;
        policy.verification.max_usd = caps.1;
    }
    if let Some(value) = raw.max_total_tokens {
        let caps = per_profile(vars::MAX_TOTAL_TOKENS, value, problems, |text| {
            text.parse::<u64>()
                .ok()
                .filter(|tokens| (1..=MAX_TOTAL_TOKENS).contains(tokens))
                .ok_or_else(|| format!("an integer from 1 to {MAX_TOTAL_TOKENS}"))
        });
        policy.general.max_total_tokens = caps.0;
        policy.verification.max_total_tokens = caps.1;
    }
    if let Some(value) = raw.allowed_models {
        for model in super::parse_list(value) {
            match model_id_problem(&model) {
                Some(problem) => problems.push(format!(
                    "{}: {} {problem}",
                    vars::ALLOWED_MODELS,
                    pyfmt::repr_str(&model)
                )),
                None if !policy.allowed_models.contains(&model) => {
                    policy.allowed_models.push(model);
                }
                None => {}
            }
        }
    }
    let overrides = raw
        .model_prices
        .map(|value| prices(value, problems))
        .unwrap_or_default();
    policy.prices = PriceTable::with_overrides(overrides);
    policy
}

/// Whether the caps can be held by a backend that does not price model calls (the Claude Code
/// CLI holds a USD budget itself, never a token budget).
pub(super) fn token_caps_set(policy: &SpendPolicy) -> bool {
    [&policy.general, &policy.verification]
        .iter()
        .any(|caps| caps.max_total_tokens.is_some())
}

/// `VALUE` (every profile) or `profile=VALUE,…` (`general`, `verification`; a bare value first
/// applies to the profiles not named).
fn per_profile<T: Copy>(
    name: &str,
    value: &str,
    problems: &mut Vec<String>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> (Option<T>, Option<T>) {
    let mut all = None;
    let mut general = None;
    let mut verification = None;
    for item in super::parse_list(value) {
        let (slot, text) = match item.split_once('=') {
            None => (&mut all, item.as_str()),
            Some((profile, text)) => match profile.trim() {
                "general" => (&mut general, text.trim()),
                "verification" => (&mut verification, text.trim()),
                other => {
                    problems.push(format!(
                        "{name}: unknown profile {} (use 'general' or 'verification')",
                        pyfmt::repr_str(other)
                    ));
                    continue;
                }
            },
        };
        if slot.is_some() {
            problems.push(format!("{name}: {} is given twice", pyfmt::repr_str(&item)));
            continue;
        }
        match parse(text) {
            Ok(parsed) => *slot = Some(parsed),
            Err(expected) => problems.push(format!(
                "{name}: {} is not {expected}",
                pyfmt::repr_str(text)
            )),
        }
    }
    (general.or(all), verification.or(all))
}

/// `prefix=input/output[/cache_write/cache_read],…` in USD per million tokens.
fn prices(value: &str, problems: &mut Vec<String>) -> Vec<(String, Prices)> {
    let name = vars::MODEL_PRICES;
    let items = super::parse_list(value);
    if items.len() > MAX_PRICE_ENTRIES {
        problems.push(format!(
            "{name}: {} entries, more than the {MAX_PRICE_ENTRIES} allowed",
            items.len()
        ));
        return Vec::new();
    }
    let mut out: Vec<(String, Prices)> = Vec::with_capacity(items.len());
    for item in items {
        let Some((prefix, numbers)) = item.split_once('=') else {
            problems.push(format!(
                "{name}: {} is not MODEL=INPUT/OUTPUT[/CACHE_WRITE/CACHE_READ]",
                pyfmt::repr_str(&item)
            ));
            continue;
        };
        let prefix = prefix.trim();
        if let Some(problem) = model_id_problem(prefix) {
            problems.push(format!(
                "{name}: model {} {problem}",
                pyfmt::repr_str(prefix)
            ));
            continue;
        }
        let parsed: Option<Vec<f64>> = numbers
            .split('/')
            .map(|n| {
                n.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|p| p.is_finite() && (0.0..=MAX_PRICE_PER_MTOK).contains(p))
            })
            .collect();
        let prices = match parsed.as_deref() {
            Some([input, output]) => Prices::new(*input, *output),
            Some([input, output, cache_write, cache_read]) => Prices {
                input: *input,
                output: *output,
                cache_write: *cache_write,
                cache_read: *cache_read,
            },
            _ => {
                problems.push(format!(
                    "{name}: {} needs two or four prices from 0 to {MAX_PRICE_PER_MTOK} \
                     (USD per million tokens: input/output[/cache_write/cache_read])",
                    pyfmt::repr_str(&item)
                ));
                continue;
            }
        };
        if out.iter().any(|(known, _)| known == prefix) {
            problems.push(format!(
                "{name}: model {} is given twice",
                pyfmt::repr_str(prefix)
            ));
            continue;
        }
        out.push((prefix.to_owned(), prices));
    }
    out
}
