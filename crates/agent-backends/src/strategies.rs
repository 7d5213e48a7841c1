//! Property-test strategies shared by the parsers' campaigns of both backends (#12):
//! arbitrary JSON values built from boundary scalars and the field names a parser looks for.

use proptest::prelude::*;
use serde_json::{Value, json};

/// The campaigns' configuration: their case count (`agent_testkit::peers::proptest_cases`).
pub(crate) fn config() -> ProptestConfig {
    ProptestConfig::with_cases(agent_testkit::peers::proptest_cases(1))
}

/// Null, booleans, boundary integers and floats, any string, and `literals` (the values a
/// parser matches on).
fn scalar(literals: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(i64::MIN),
            Just(i64::MAX),
            any::<i64>()
        ]
        .prop_map(Value::from),
        prop_oneof![Just(u64::MAX), Just(u64::from(u32::MAX) + 1), any::<u64>()]
            .prop_map(Value::from),
        prop_oneof![Just(f64::MAX), Just(-0.0), Just(1e300), any::<f64>()].prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::from),
        prop::sample::select(literals).prop_map(Value::from),
    ]
}

/// Arbitrary JSON nested a few levels deep, whose object keys are often one of `keys`.
pub(crate) fn json_value(
    literals: &'static [&'static str],
    keys: &'static [&'static str],
) -> impl Strategy<Value = Value> {
    scalar(literals).prop_recursive(6, 64, 8, move |inner| {
        let key = prop_oneof![
            prop::sample::select(keys).prop_map(str::to_owned),
            any::<String>()
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
