//! Small text rules shared by workflows: summaries and code-point truncation.

/// Cuts `text` to its first `max` Unicode code points.
pub fn truncate_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((idx, _)) => &text[..idx],
        None => text,
    }
}

/// `docs/reference/envelope.md#3-summary`: the first line of the stripped output; longer than 200
/// code points → its first 200 plus `...`; `(empty response)` when blank.
pub fn summarize_output(output: &str) -> String {
    let first = output.trim().lines().next().unwrap_or("");
    if first.is_empty() {
        return "(empty response)".to_owned();
    }
    let cut = truncate_chars(first, 200);
    if cut.len() < first.len() {
        let mut s = String::with_capacity(cut.len() + 3);
        s.push_str(cut);
        s.push_str("...");
        s
    } else {
        first.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_rules() {
        assert_eq!(summarize_output("  hello\nworld"), "hello");
        assert_eq!(summarize_output(" \n\t "), "(empty response)");
        let long = "é".repeat(250);
        let s = summarize_output(&long);
        assert_eq!(s.chars().count(), 203);
        assert!(s.ends_with("..."));
        assert_eq!(summarize_output(&"a".repeat(200)), "a".repeat(200));
        assert_eq!(truncate_chars("abc", 5), "abc");
    }
}
