//! Python-style rendering of JSON values, as the original runtime printed them
//! (`docs/reference/README.md#conventions`): `str(value)`
//! for stringified request fields and `repr(value)` for argument summaries and quoted
//! identifiers in warnings.

use serde_json::{Number, Value};

/// `str(value)`: strings as they are, everything else as its Python literal.
pub fn py_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => py_literal(other),
    }
}

/// `repr(value)`: `'text'`, `True`/`False`/`None`, `[1, 2]`, `{'a': 1}`.
pub fn py_literal(value: &Value) -> String {
    let mut out = String::new();
    write_literal(&mut out, value);
    out
}

fn write_literal(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => out.push_str(&py_number(n)),
        Value::String(s) => out.push_str(&py_repr(s)),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_literal(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&py_repr(key));
                out.push_str(": ");
                write_literal(out, item);
            }
            out.push('}');
        }
    }
}

/// A JSON number as Python prints it: integers as digits, floats as `repr(float)` (shortest
/// round-trip digits, exponent form below 1e-4 and from 1e16 on, written `1e+16`, `1e-05`).
fn py_number(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let Some(f) = n.as_f64() else {
        return n.to_string();
    };
    // Rust's `Debug` for f64 uses the same digits and the same exponent thresholds as
    // Python's `repr`; only the exponent is written differently.
    let debug = format!("{f:?}");
    match debug.split_once('e') {
        Some((mantissa, exponent)) => {
            let (sign, digits) = match exponent.strip_prefix('-') {
                Some(digits) => ('-', digits),
                None => ('+', exponent),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => debug,
    }
}

/// `repr(text)` for a string: single quotes unless the text holds a single quote and no
/// double quote; backslashes, the quote and non-printable characters escaped.
pub fn py_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if !printable(c) => {
                let code = u32::from(c);
                if code <= 0xff {
                    out.push_str(&format!("\\x{code:02x}"));
                } else if code <= 0xffff {
                    out.push_str(&format!("\\u{code:04x}"));
                } else {
                    out.push_str(&format!("\\U{code:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// An approximation of Python's `str.isprintable` for one character: control characters,
/// separators other than the space and the common format characters are not printable.
fn printable(c: char) -> bool {
    !matches!(u32::from(c),
        0x00..=0x1f
        | 0x7f..=0xa0
        | 0xad
        | 0x1680
        | 0x2000..=0x200f
        | 0x2028..=0x202f
        | 0x205f..=0x2064
        | 0x3000
        | 0xfeff
        | 0xd800..=0xdfff
        | 0xe000..=0xf8ff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn literals_render_like_python() {
        assert_eq!(py_literal(&json!(null)), "None");
        assert_eq!(py_literal(&json!(true)), "True");
        assert_eq!(py_literal(&json!(false)), "False");
        assert_eq!(py_literal(&json!(12)), "12");
        assert_eq!(py_literal(&json!(-3)), "-3");
        assert_eq!(py_literal(&json!(1.5)), "1.5");
        assert_eq!(py_literal(&json!(1.0)), "1.0");
        assert_eq!(py_literal(&json!(1e16)), "1e+16");
        assert_eq!(py_literal(&json!(1e15)), "1000000000000000.0");
        assert_eq!(py_literal(&json!(0.0001)), "0.0001");
        assert_eq!(py_literal(&json!(0.00001)), "1e-05");
        assert_eq!(py_literal(&json!(1.5e-7)), "1.5e-07");
        assert_eq!(py_literal(&json!(1.5e300)), "1.5e+300");
        assert_eq!(py_literal(&json!("a")), "'a'");
        assert_eq!(py_literal(&json!([1, "b", null])), "[1, 'b', None]");
        assert_eq!(
            py_literal(&json!({"a": 1, "b": [true]})),
            "{'a': 1, 'b': [True]}"
        );
        assert_eq!(py_literal(&json!({})), "{}");
        assert_eq!(py_literal(&json!([])), "[]");
    }

    #[test]
    fn str_leaves_strings_alone() {
        assert_eq!(py_str(&json!("req_001")), "req_001");
        assert_eq!(py_str(&json!(7)), "7");
        assert_eq!(py_str(&json!(null)), "None");
        assert_eq!(py_str(&json!(["x"])), "['x']");
    }

    #[test]
    fn repr_picks_quotes_and_escapes() {
        assert_eq!(py_repr("plain"), "'plain'");
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("both ' and \""), "'both \\' and \"'");
        assert_eq!(py_repr("a\\b\nc\td\r"), "'a\\\\b\\nc\\td\\r'");
        assert_eq!(py_repr("\u{1}\u{a0}"), "'\\x01\\xa0'");
        assert_eq!(py_repr("\u{2028}"), "'\\u2028'");
        assert_eq!(py_repr("é世界🎉"), "'é世界🎉'");
    }
}
