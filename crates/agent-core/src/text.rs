//! Small text rules shared by workflows: summaries, truncation to code points or to bytes, and
//! the redaction of a URL's password (the database's, the trace collector's: the one place it is
//! done; logs, errors, `doctor` and the status resource all show a URL through [`redact_url`]).

/// Cuts `text` to its first `max` Unicode code points.
pub fn truncate_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((idx, _)) => &text[..idx],
        None => text,
    }
}

/// Cuts `text` to at most `max` bytes, at a character boundary (the longest such prefix).
pub fn truncate_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
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
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate_bytes("abc", 5), "abc");
        assert_eq!(truncate_bytes("abc", 2), "ab");
        // "é" is two bytes: a cut in its middle drops it.
        assert_eq!(truncate_bytes("aé", 2), "a");
        assert_eq!(truncate_bytes("", 0), "");
    }

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

/// `url` with the password of its user-info part replaced by `***`
/// (`postgres://app:secret@db/x` → `postgres://app:***@db/x`), and a `password=` query
/// parameter's value likewise. A URL without one comes back unchanged. Pure text: it works on
/// URLs that do not parse, so an error about a malformed URL never shows the secret either.
pub fn redact_url(url: &str) -> String {
    const MASK: &str = "***";
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len());
    // The authority is what follows `scheme://` up to the first `/` (or the end).
    match head.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            out.push_str(scheme);
            out.push_str("://");
            // The last `@` ends the user info: a password may itself hold `@`.
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    match userinfo.split_once(':') {
                        Some((user, _password)) => {
                            out.push_str(user);
                            out.push(':');
                            out.push_str(MASK);
                        }
                        None => out.push_str(userinfo),
                    }
                    out.push('@');
                    out.push_str(host);
                }
                None => out.push_str(authority),
            }
            out.push_str(path);
        }
        None => out.push_str(head),
    }
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}={MASK}"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

#[cfg(test)]
mod redact_tests {
    use super::redact_url;

    #[test]
    fn a_password_never_survives_redaction() {
        let cases = [
            (
                "postgres://app:s3cret@db:5432/x",
                "postgres://app:***@db:5432/x",
            ),
            (
                "postgresql://app:p@ss@w0rd@db/x?sslmode=require",
                "postgresql://app:***@db/x?sslmode=require",
            ),
            ("postgres://app@db/x", "postgres://app@db/x"),
            (
                "postgres://db/x?user=a&password=hunter2&sslmode=verify-full",
                "postgres://db/x?user=a&password=***&sslmode=verify-full",
            ),
            ("postgres://u:pw@db", "postgres://u:***@db"),
            ("sqlite:///tmp/x.db", "sqlite:///tmp/x.db"),
            ("not a url", "not a url"),
            ("", ""),
        ];
        for (url, redacted) in cases {
            assert_eq!(redact_url(url), redacted, "{url}");
        }
        for secret in ["s3cret", "p@ss@w0rd", "hunter2"] {
            for (url, _) in cases {
                assert!(!redact_url(url).contains(secret), "{url}");
            }
        }
    }
}
