//! Python-style rendering of values, the one place it is done: the original's messages,
//! warnings and prompts quote values with Python's `repr()` and `str()`, and the contract keeps
//! those bytes (`docs/reference/README.md`, "Python-style rendering").
//!
//! Pure functions over JSON values and strings, exactly as CPython renders them:
//!
//! * [`repr_str`]: `repr()` of a `str`: single quotes unless the text holds a single quote and
//!   no double quote; `\\`, the chosen quote, `\n`, `\r`, `\t` escaped; every other character
//!   that is not printable (`str.isprintable`: the Unicode categories Cc, Cf, Cs, Co, Cn, Zl,
//!   Zp and Zs except the space) as `\xhh`, `\uhhhh` or `\Uhhhhhhhh`; printable characters,
//!   non-ASCII included, as they are.
//! * [`repr`]: `repr()` of a JSON value: `None`, `True`, `False`, integers as digits, floats as
//!   `repr(float)` (`1.0`, `1e+16`, `1e-05`), `[1, 'b']`, `{'a': 1}`.
//! * [`to_str`]: `str()`: a string as it is, anything else as [`repr`].
//! * [`list`]: `repr()` of a list of strings, `['a', 'b']`.
//! * [`truthy`] and [`type_name`]: Python's truthiness and type name of a JSON value.
//!
//! ```
//! use agent_core::pyfmt;
//! use serde_json::json;
//!
//! assert_eq!(pyfmt::repr_str("it's"), "\"it's\"");
//! assert_eq!(pyfmt::repr(&json!({"a": [1, null, 1e16]})), "{'a': [1, None, 1e+16]}");
//! assert_eq!(pyfmt::to_str(&json!("as is")), "as is");
//! assert_eq!(pyfmt::list(["a", "b"]), "['a', 'b']");
//! ```
//!
//! Which characters are printable follows the Unicode database of the
//! `unicode-general-category` crate (Unicode 16), where CPython uses its own release's.

use serde_json::{Number, Value};
use unicode_general_category::{GeneralCategory, get_general_category};

/// `repr(text)` for a Python `str`.
pub fn repr_str(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    write_repr_str(&mut out, text);
    out
}

/// `repr(value)`: the Python literal of a JSON value.
pub fn repr(value: &Value) -> String {
    let mut out = String::new();
    write_repr(&mut out, value);
    out
}

/// `str(value)`: a string as it is, every other value as its [`repr`].
pub fn to_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => repr(other),
    }
}

/// `repr()` of a list of strings: `['a', 'b']`, `[]`.
pub fn list<I, S>(items: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = String::from("[");
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_repr_str(&mut out, item.as_ref());
    }
    out.push(']');
    out
}

/// Python's truthiness of a JSON value: `None`, `False`, `0`, `0.0`, `''`, `[]` and `{}` are
/// false.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// The name of the Python type a JSON value decodes to (`type(value).__name__`).
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn write_repr(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => out.push_str(&number(n)),
        Value::String(s) => write_repr_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr_str(out, key);
                out.push_str(": ");
                write_repr(out, item);
            }
            out.push('}');
        }
    }
}

/// A JSON number as Python prints it: integers as digits, floats as `repr(float)` (shortest
/// round-trip digits, exponent form below 1e-4 and from 1e16 on, written `1e+16`, `1e-05`).
fn number(n: &Number) -> String {
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

fn write_repr_str(out: &mut String, text: &str) {
    use std::fmt::Write as _;
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
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
                // Writing to a String cannot fail.
                let _ = if code <= 0xff {
                    write!(out, "\\x{code:02x}")
                } else if code <= 0xffff {
                    write!(out, "\\u{code:04x}")
                } else {
                    write!(out, "\\U{code:08x}")
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Python's `str.isprintable` for one character.
fn printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !matches!(
        get_general_category(c),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::Surrogate
            | GeneralCategory::PrivateUse
            | GeneralCategory::Unassigned
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::SpaceSeparator
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Every expected string below was printed by CPython 3.11 (`print(repr(...))`).

    #[test]
    fn repr_str_picks_quotes_like_python() {
        assert_eq!(repr_str("plain"), "'plain'");
        assert_eq!(repr_str(""), "''");
        assert_eq!(repr_str("it's"), r#""it's""#);
        assert_eq!(repr_str(r#"say "hi""#), r#"'say "hi"'"#);
        assert_eq!(repr_str(r#"both ' and ""#), r#"'both \' and "'"#);
    }

    #[test]
    fn repr_str_escapes_like_python() {
        assert_eq!(repr_str("a\\b\nc\td\re"), r"'a\\b\nc\td\re'");
        assert_eq!(repr_str("\u{0}\u{1}\u{1f}\u{7f}"), r"'\x00\x01\x1f\x7f'");
        assert_eq!(repr_str("\u{85}\u{a0}\u{ad}"), r"'\x85\xa0\xad'");
        assert_eq!(
            repr_str("\u{2028}\u{2029}\u{200b}\u{feff}\u{3000}"),
            r"'\u2028\u2029\u200b\ufeff\u3000'"
        );
        assert_eq!(
            repr_str("\u{e0001}\u{10ffff}\u{d7ff}"),
            r"'\U000e0001\U0010ffff\ud7ff'"
        );
        assert_eq!(repr_str("\u{378}"), r"'\u0378'");
        assert_eq!(repr_str("\u{e000}"), r"'\ue000'");
        assert_eq!(repr_str("é世界🎉"), "'é世界🎉'");
        assert_eq!(repr_str("😀 ok"), "'😀 ok'");
    }

    #[test]
    fn repr_renders_values_like_python() {
        assert_eq!(repr(&json!(null)), "None");
        assert_eq!(repr(&json!(true)), "True");
        assert_eq!(repr(&json!(false)), "False");
        assert_eq!(repr(&json!(12)), "12");
        assert_eq!(repr(&json!(-3)), "-3");
        assert_eq!(repr(&json!(u64::MAX)), "18446744073709551615");
        assert_eq!(repr(&json!(1.5)), "1.5");
        assert_eq!(repr(&json!(2.0)), "2.0");
        assert_eq!(repr(&json!(-0.0)), "-0.0");
        assert_eq!(repr(&json!(0.1 + 0.2)), "0.30000000000000004");
        assert_eq!(repr(&json!(1e15)), "1000000000000000.0");
        assert_eq!(repr(&json!(1e16)), "1e+16");
        assert_eq!(repr(&json!(1e22)), "1e+22");
        assert_eq!(
            repr(&json!(123_456_789_012_345_680.0)),
            "1.2345678901234568e+17"
        );
        assert_eq!(repr(&json!(0.0001)), "0.0001");
        assert_eq!(repr(&json!(0.00001)), "1e-05");
        assert_eq!(repr(&json!(1.5e-7)), "1.5e-07");
        assert_eq!(repr(&json!(1.5e300)), "1.5e+300");
        assert_eq!(
            repr(&json!([1, "b", null, true, 1.5, 1e16, 1e-5, {"k": "it's"}])),
            r#"[1, 'b', None, True, 1.5, 1e+16, 1e-05, {'k': "it's"}]"#
        );
        assert_eq!(repr(&json!({})), "{}");
        assert_eq!(repr(&json!([])), "[]");
    }

    #[test]
    fn str_leaves_strings_alone() {
        assert_eq!(to_str(&json!("req_001")), "req_001");
        assert_eq!(to_str(&json!("it's")), "it's");
        assert_eq!(to_str(&json!(7)), "7");
        assert_eq!(to_str(&json!(null)), "None");
        assert_eq!(to_str(&json!(["x", 2])), "['x', 2]");
        assert_eq!(to_str(&json!({"a": [1, 2.0]})), "{'a': [1, 2.0]}");
    }

    #[test]
    fn list_quotes_each_item() {
        assert_eq!(list(["a", "b"]), "['a', 'b']");
        assert_eq!(list(Vec::<String>::new()), "[]");
        assert_eq!(list(["/tmp/it's", "a\nb"]), r#"["/tmp/it's", 'a\nb']"#);
    }

    /// Reads a Python string literal as `repr` writes it (the escapes above, nothing else).
    fn unrepr(literal: &str) -> Option<String> {
        let quote = literal.chars().next()?;
        let body = literal.strip_prefix(quote)?.strip_suffix(quote)?;
        let mut out = String::new();
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                if c == quote {
                    return None; // an unescaped quote would end the literal
                }
                out.push(c);
                continue;
            }
            let hex = |chars: &mut std::str::Chars<'_>, n: usize| {
                let digits: String = chars.by_ref().take(n).collect();
                u32::from_str_radix(&digits, 16)
                    .ok()
                    .and_then(char::from_u32)
            };
            match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'x' => out.push(hex(&mut chars, 2)?),
                'u' => out.push(hex(&mut chars, 4)?),
                'U' => out.push(hex(&mut chars, 8)?),
                c @ ('\\' | '\'' | '"') => out.push(c),
                _ => return None,
            }
        }
        Some(out)
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(
            crate::testing::proptest_cases(1)
        ))]

        /// Any text: the literal reads back as the text, is quoted as Python picks, and holds
        /// only printable characters.
        #[test]
        fn repr_str_round_trips(text in "\\PC*|[\\x00-\\x{7f}'\"\\\\]*|\\PC*\\p{Cc}\\p{Cf}\\p{Zs}\\PC*") {
            let literal = repr_str(&text);
            proptest::prop_assert_eq!(unrepr(&literal), Some(text.clone()));
            let quote = if text.contains('\'') && !text.contains('"') { '"' } else { '\'' };
            proptest::prop_assert!(literal.starts_with(quote) && literal.ends_with(quote));
            proptest::prop_assert!(literal.chars().all(printable), "{}", literal);
        }
    }

    #[test]
    fn truthiness_and_type_names() {
        for falsy in [
            json!(null),
            json!(false),
            json!(0),
            json!(0.0),
            json!(""),
            json!([]),
            json!({}),
        ] {
            assert!(!truthy(&falsy), "{falsy}");
        }
        for true_ in [
            json!(true),
            json!(-1),
            json!(0.5),
            json!("false"),
            json!([0]),
            json!({"a": null}),
        ] {
            assert!(truthy(&true_), "{true_}");
        }
        let names: Vec<&str> = [
            json!(null),
            json!(true),
            json!(1),
            json!(1.0),
            json!("s"),
            json!([]),
            json!({}),
        ]
        .iter()
        .map(type_name)
        .collect();
        assert_eq!(
            names,
            ["NoneType", "bool", "int", "float", "str", "list", "dict"]
        );
    }
}
