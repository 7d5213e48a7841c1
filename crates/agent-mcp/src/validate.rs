//! The schema layer (`docs/reference/tools.md#31-schema-layer`): arguments are checked against the
//! tool's published input schema before any handler runs. Covers the keywords our schemas use
//! (`type`, `enum`, `minimum`, `maximum`, `required`, `items`); messages follow the usual
//! JSON-Schema validator phrasing, e.g. `'task' is a required property`.

use agent_core::pyfmt;
use serde_json::{Map, Value};

/// The prefix of every schema-layer failure.
pub const INPUT_VALIDATION_PREFIX: &str = "Input validation error: ";

fn is_type(value: &Value, ty: &str) -> bool {
    match ty {
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        "number" => value.is_number(),
        "integer" => {
            value.as_i64().is_some()
                || value.as_u64().is_some()
                || value
                    .as_f64()
                    .is_some_and(|f| f.is_finite() && f.fract() == 0.0)
        }
        _ => true,
    }
}

fn check(value: &Value, schema: &Map<String, Value>) -> Result<(), String> {
    match schema.get("type") {
        Some(Value::String(ty)) if !is_type(value, ty) => {
            return Err(format!("{} is not of type '{ty}'", pyfmt::repr(value)));
        }
        Some(Value::Array(types))
            if !types
                .iter()
                .filter_map(Value::as_str)
                .any(|t| is_type(value, t)) =>
        {
            let names: Vec<String> = types.iter().map(pyfmt::repr).collect();
            return Err(format!(
                "{} is not of type {}",
                pyfmt::repr(value),
                names.join(", ")
            ));
        }
        _ => {}
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(value)
    {
        return Err(format!(
            "{} is not one of {}",
            pyfmt::repr(value),
            pyfmt::repr(&Value::Array(allowed.clone()))
        ));
    }
    if let (Some(min), Some(n)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) && n < min
    {
        return Err(format!(
            "{} is less than the minimum of {}",
            pyfmt::repr(value),
            pyfmt::repr(&schema["minimum"])
        ));
    }
    if let (Some(max), Some(n)) = (
        schema.get("maximum").and_then(Value::as_f64),
        value.as_f64(),
    ) && n > max
    {
        return Err(format!(
            "{} is greater than the maximum of {}",
            pyfmt::repr(value),
            pyfmt::repr(&schema["maximum"])
        ));
    }
    if let (Some(Value::Object(items)), Value::Array(values)) = (schema.get("items"), value) {
        for item in values {
            check(item, items)?;
        }
    }
    if let Value::Object(object) = value {
        if let Some(Value::Array(required)) = schema.get("required") {
            for key in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(key) {
                    return Err(format!("'{key}' is a required property"));
                }
            }
        }
        if let Some(Value::Object(properties)) = schema.get("properties") {
            for (key, sub) in properties {
                if let (Some(v), Value::Object(sub)) = (object.get(key), sub) {
                    check(v, sub)?;
                }
            }
        }
    }
    Ok(())
}

/// Validates tool arguments; `Err` holds the message after [`INPUT_VALIDATION_PREFIX`].
/// Unknown extra properties are allowed and defaults are not injected.
pub fn validate_arguments(
    arguments: &Map<String, Value>,
    schema: &Map<String, Value>,
) -> Result<(), String> {
    // Avoid cloning the arguments: check the object-level rules directly.
    if let Some(Value::Array(required)) = schema.get("required") {
        for key in required.iter().filter_map(Value::as_str) {
            if !arguments.contains_key(key) {
                return Err(format!("'{key}' is a required property"));
            }
        }
    }
    if let Some(Value::Object(properties)) = schema.get("properties") {
        for (key, sub) in properties {
            if let (Some(v), Value::Object(sub)) = (arguments.get(key), sub) {
                check(v, sub)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::ToolName;
    use serde_json::json;

    fn run(args: Value, tool: ToolName) -> Result<(), String> {
        let schema = tool.input_schema();
        validate_arguments(args.as_object().unwrap(), schema.as_object().unwrap())
    }

    #[test]
    fn messages_follow_the_validator_phrasing() {
        let cases = [
            (
                json!({}),
                ToolName::RunTask,
                "'task' is a required property",
            ),
            (
                json!({"task": "x", "max_turns": 0}),
                ToolName::RunTask,
                "0 is less than the minimum of 1",
            ),
            (
                json!({"limit": 9999}),
                ToolName::ListSessions,
                "9999 is greater than the maximum of 200",
            ),
            (
                json!({"task": "x", "system_profile": "bogus"}),
                ToolName::RunTask,
                "'bogus' is not one of ['general', 'verification']",
            ),
            (
                json!({"task": "x", "max_turns": "5"}),
                ToolName::RunTask,
                "'5' is not of type 'integer'",
            ),
            (
                json!({"task": "x", "max_turns": true}),
                ToolName::RunTask,
                "True is not of type 'integer'",
            ),
            (
                json!({"task": "x", "attachments": [1]}),
                ToolName::RunTask,
                "1 is not of type 'string'",
            ),
            (
                json!({"task": "x", "working_directory": null}),
                ToolName::RunTask,
                "None is not of type 'string'",
            ),
            (
                json!({"status": "nope"}),
                ToolName::ListSessions,
                "'nope' is not one of ['created', 'running', 'completed', 'failed', 'interrupted', 'cancelled']",
            ),
            // Values are quoted exactly as Python's `repr` does (expected bytes from CPython).
            (
                json!({"task": "x", "max_turns": "it's"}),
                ToolName::RunTask,
                r#""it's" is not of type 'integer'"#,
            ),
            (
                json!({"task": "x", "max_turns": "a\nb"}),
                ToolName::RunTask,
                r"'a\nb' is not of type 'integer'",
            ),
            (
                json!({"task": "x", "attachments": [1e16]}),
                ToolName::RunTask,
                "1e+16 is not of type 'string'",
            ),
            (
                json!({"session_id": "s"}),
                ToolName::ContinueSession,
                "'message' is a required property",
            ),
        ];
        for (args, tool, want) in cases {
            assert_eq!(run(args.clone(), tool), Err(want.to_owned()), "{args}");
        }
    }

    #[test]
    fn valid_arguments_pass() {
        assert_eq!(
            run(
                json!({"task": "x", "max_turns": 5.0, "foo": 1}),
                ToolName::RunTask
            ),
            Ok(())
        );
        assert_eq!(run(json!({}), ToolName::ListSessions), Ok(()));
        assert_eq!(
            run(json!({"anything": [1]}), ToolName::GetRuntimeStatus),
            Ok(())
        );
        assert_eq!(
            run(
                json!({"task": "x", "system_profile": "verification"}),
                ToolName::VerifyTask
            ),
            Ok(())
        );
    }
}
