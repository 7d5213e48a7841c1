//! The schema layer (`docs/reference/tools.md#31-schema-layer`): arguments are checked against the
//! tool's published input schema before any handler runs. Covers the keywords our schemas use
//! (`type`, `enum`, `minimum`, `maximum`, `required`, `items`); messages follow the usual
//! JSON-Schema validator phrasing, e.g. `'task' is a required property`.

use serde_json::{Map, Value};

/// The prefix of every schema-layer failure.
pub const INPUT_VALIDATION_PREFIX: &str = "Input validation error: ";

/// Renders a JSON value the way Python's `repr` would, as the messages of
/// `docs/reference/tools.md#31-schema-layer` do.
fn repr(value: &Value) -> String {
    match value {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{s}'"),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("'{k}': {}", repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

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
            return Err(format!("{} is not of type '{ty}'", repr(value)));
        }
        Some(Value::Array(types))
            if !types
                .iter()
                .filter_map(Value::as_str)
                .any(|t| is_type(value, t)) =>
        {
            let names: Vec<String> = types.iter().map(repr).collect();
            return Err(format!(
                "{} is not of type {}",
                repr(value),
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
            repr(value),
            repr(&Value::Array(allowed.clone()))
        ));
    }
    if let (Some(min), Some(n)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) && n < min
    {
        return Err(format!(
            "{} is less than the minimum of {}",
            repr(value),
            repr(&schema["minimum"])
        ));
    }
    if let (Some(max), Some(n)) = (
        schema.get("maximum").and_then(Value::as_f64),
        value.as_f64(),
    ) && n > max
    {
        return Err(format!(
            "{} is greater than the maximum of {}",
            repr(value),
            repr(&schema["maximum"])
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
