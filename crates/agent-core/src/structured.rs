//! Structured results (`docs/reference/tools.md#16-structured-results`): a caller's
//! `output_schema` (a JSON Schema object, bounded and checked before anything runs) and the
//! check of the model's answer against it (a maintained validator, `jsonschema`, with no
//! remote or file references: no I/O).

use std::sync::Arc;

use serde_json::{Value, json};

/// The largest `output_schema`, as compact JSON.
pub const MAX_OUTPUT_SCHEMA_BYTES: usize = 64 * 1024;

/// At most this many schema violations are reported for an answer (or problems for a schema).
pub const MAX_REPORTED_PROBLEMS: usize = 10;

/// How much of an answer that does not validate is kept in the error's details.
pub const MAX_KEPT_ANSWER_CHARS: usize = 16 * 1024;

/// A caller's output schema, checked: a JSON object of at most [`MAX_OUTPUT_SCHEMA_BYTES`]
/// that is a valid JSON Schema, compiled once (when the request is read) for every answer
/// checked against it.
#[derive(Debug, Clone)]
pub struct OutputSchema(Arc<Compiled>);

#[derive(Debug)]
struct Compiled {
    schema: Value,
    validator: jsonschema::Validator,
}

/// Two schemas are equal when they are the same JSON.
impl PartialEq for OutputSchema {
    fn eq(&self, other: &Self) -> bool {
        self.0.schema == other.0.schema
    }
}

impl OutputSchema {
    /// Checks `value`; the problem, in words, when it is not a usable schema.
    pub fn parse(value: &Value) -> Result<Self, String> {
        if !value.is_object() {
            return Err("must be a JSON Schema object".to_owned());
        }
        let size = value.to_string().len();
        if size > MAX_OUTPUT_SCHEMA_BYTES {
            return Err(format!(
                "is {size} bytes, more than the {MAX_OUTPUT_SCHEMA_BYTES} allowed"
            ));
        }
        let validator = jsonschema::validator_for(value)
            .map_err(|e| format!("is not a valid JSON Schema: {}", one_line(&e.to_string())))?;
        Ok(Self(Arc::new(Compiled {
            schema: value.clone(),
            validator,
        })))
    }

    /// The schema as given.
    pub fn value(&self) -> &Value {
        &self.0.schema
    }

    /// The answer's JSON value when `text` (a JSON document, possibly inside one Markdown
    /// code fence) validates against the schema; else what is wrong with it.
    pub fn check_answer(&self, text: &str) -> Result<Value, Vec<String>> {
        let answer: Value = serde_json::from_str(unfenced(text))
            .map_err(|e| vec![format!("the answer is not JSON: {e}")])?;
        let problems: Vec<String> = self
            .0
            .validator
            .iter_errors(&answer)
            .take(MAX_REPORTED_PROBLEMS)
            .map(|e| {
                let at = e.instance_path().to_string();
                let at = if at.is_empty() { "/".to_owned() } else { at };
                format!("{at}: {}", one_line(&e.to_string()))
            })
            .collect();
        if problems.is_empty() {
            Ok(answer)
        } else {
            Err(problems)
        }
    }
}

/// The message of an answer that does not validate.
pub fn invalid_answer_message(problems: &[String]) -> String {
    format!(
        "The answer does not match output_schema: {}",
        problems.first().map_or("", String::as_str)
    )
}

/// The error details of an answer that does not validate: every problem (at most
/// [`MAX_REPORTED_PROBLEMS`]) and the start of the raw answer.
pub fn invalid_answer_details(problems: &[String], answer: &str) -> Value {
    json!({
        "violations": problems,
        "raw_text": crate::text::truncate_chars(answer, MAX_KEPT_ANSWER_CHARS),
    })
}

/// `text` trimmed, without one surrounding Markdown code fence (```json … ```).
fn unfenced(text: &str) -> &str {
    let text = text.trim();
    let Some(rest) = text.strip_prefix("```") else {
        return text;
    };
    let Some(body) = rest.strip_suffix("```") else {
        return text;
    };
    // The fence's info string (`json`) runs to the first newline.
    body.split_once('\n')
        .map_or(body, |(_, inner)| inner)
        .trim()
}

fn one_line(text: &str) -> String {
    crate::text::truncate_chars(&text.split_whitespace().collect::<Vec<_>>().join(" "), 300)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> OutputSchema {
        OutputSchema::parse(&json!({
            "type": "object",
            "properties": {"verdict": {"enum": ["pass", "fail"]}, "score": {"type": "integer"}},
            "required": ["verdict", "score"],
            "additionalProperties": false
        }))
        .unwrap()
    }

    #[test]
    fn a_valid_answer_is_its_json_value_fenced_or_not() {
        let s = schema();
        let want = json!({"verdict": "pass", "score": 3});
        assert_eq!(
            s.check_answer(r#"{"verdict": "pass", "score": 3}"#),
            Ok(want.clone())
        );
        assert_eq!(
            s.check_answer("```json\n{\"verdict\": \"pass\", \"score\": 3}\n```"),
            Ok(want)
        );
    }

    #[test]
    fn an_invalid_answer_says_where_and_why() {
        let s = schema();
        let problems = s
            .check_answer(r#"{"verdict": "maybe", "extra": 1}"#)
            .unwrap_err();
        assert!(
            problems.iter().any(|p| p.starts_with("/verdict: ")),
            "{problems:?}"
        );
        assert!(problems.iter().any(|p| p.contains("score")), "{problems:?}");
        assert!(problems.len() <= MAX_REPORTED_PROBLEMS);
        let not_json = s.check_answer("I think it passes.").unwrap_err();
        assert!(
            not_json[0].starts_with("the answer is not JSON: "),
            "{not_json:?}"
        );
        assert!(
            invalid_answer_message(&not_json)
                .starts_with("The answer does not match output_schema: the answer is not JSON: ")
        );
        let details = invalid_answer_details(&not_json, &"x".repeat(20_000));
        assert_eq!(
            details["raw_text"].as_str().unwrap().chars().count(),
            MAX_KEPT_ANSWER_CHARS
        );
    }

    #[test]
    fn bad_schemas_are_refused_with_the_reason() {
        assert_eq!(
            OutputSchema::parse(&json!("object")).unwrap_err(),
            "must be a JSON Schema object"
        );
        let invalid = OutputSchema::parse(&json!({"type": "no-such-type"})).unwrap_err();
        assert!(
            invalid.starts_with("is not a valid JSON Schema: "),
            "{invalid}"
        );
        let big = json!({"description": "d".repeat(MAX_OUTPUT_SCHEMA_BYTES)});
        let too_big = OutputSchema::parse(&big).unwrap_err();
        assert!(
            too_big.ends_with("more than the 65536 allowed"),
            "{too_big}"
        );
        // A reference outside the schema is never fetched.
        assert!(OutputSchema::parse(&json!({"$ref": "https://example.com/s.json"})).is_err());
    }
}
