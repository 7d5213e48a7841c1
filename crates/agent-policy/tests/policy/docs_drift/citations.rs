//! Citations stay inside the repository and point at sections that exist.
//!
//! The contract is `docs/reference/`; code, tests and guides cite it as
//! `docs/reference/<page>.md#<anchor>` (or, in Markdown, as a relative link). This test scans
//! every file of the repository (`git ls-files`: the tracked files as they are in the working
//! tree; a walk of the tree without `target/` and `.git/` when git is unavailable) and
//! reports, as `file:line: problem`:
//!
//! * **outside paths**: the old specification folder, a relative Markdown link or path that
//!   leaves the repository, or a bare name of a specification file (`beyond.md`) or of a
//!   documentation page written without its folder (`sessions.md` in code, where a reader
//!   cannot tell which page it means);
//! * **`§` citations** that are not one of: the text of a Markdown link whose target section
//!   exists and carries that number (`[envelope §1](reference/envelope.md#1-tool-results)`);
//!   a number of a section of the same Markdown page (the reference's own prose, `§8.1`);
//!   a number of a section of a repository page named just before it (`docs/federation.md §3`);
//!   `RFC <n> §<section>`;
//! * **acceptance-list citations** (`acceptance 205`, `Acceptance group P`): the checklist
//!   they numbered is not in the repository; a test names the reference section it checks;
//! * **dangling links**: a relative Markdown link whose file does not exist or whose anchor is
//!   not a heading of that page (GitHub's anchor rule), and a `docs/<page>.md#<anchor>` in any
//!   file whose page or anchor does not exist;
//! * **markers without a compatibility row**: every **\[kept\]**, **\[fixed\]** and
//!   **\[added\]** in `docs/reference/` is in a section that `docs/compatibility.md` links to
//!   (the section itself or one that contains it) from the matching part of that page.
//!
//! The `checks_*` unit tests below feed each rule a bad citation and expect a report.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// The section sign, spelled as an escape so that this file obeys its own rule.
const SECTION: char = '\u{a7}';

/// Specification file names that were never pages of this repository.
const SPEC_ONLY_PAGES: [&str; 4] = [
    "acceptance.md",
    "beyond.md",
    "limitations.md",
    "profiles-and-policy.md",
];

/// This file, which holds examples of every bad citation.
const THIS_FILE: &str = "crates/agent-policy/tests/policy/docs_drift/citations.rs";

/// Files whose bytes must not change: applied migrations are checksummed by sqlx, so editing a
/// comment in one breaks every database it created. Their comments keep their old citations.
const FROZEN_DIRS: [&str; 1] = ["crates/agent-store/migrations/"];

/// The reference pages and the page that lists their markers.
const REFERENCE_DIR: &str = "docs/reference";
const COMPATIBILITY_PAGE: &str = "docs/compatibility.md";

/// A heading of a Markdown page: its anchor and its leading section number, if any.
#[derive(Debug, Clone)]
struct Heading {
    level: usize,
    anchor: String,
    number: Option<String>,
    line: usize,
}

/// The repository as the checks see it: every file's relative path, and the text of every
/// text file.
struct Repo {
    files: BTreeSet<String>,
    dirs: BTreeSet<String>,
    texts: BTreeMap<String, String>,
}

impl Repo {
    fn new(texts: BTreeMap<String, String>, other_files: impl IntoIterator<Item = String>) -> Self {
        let mut files: BTreeSet<String> = texts.keys().cloned().collect();
        files.extend(other_files);
        let mut dirs = BTreeSet::new();
        for file in &files {
            let mut path = Path::new(file);
            while let Some(parent) = path.parent() {
                dirs.insert(parent.to_string_lossy().into_owned());
                path = parent;
            }
        }
        Self { files, dirs, texts }
    }

    /// The repository on disk.
    fn load() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let listed = Command::new("git")
            .args(["ls-files", "-z"])
            .current_dir(&root)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .split('\0')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            });
        let paths = listed.unwrap_or_else(|| walk(&root));
        let mut texts = BTreeMap::new();
        let mut others = Vec::new();
        for path in paths {
            // A file listed by git but deleted in the working tree is skipped.
            if let Ok(bytes) = std::fs::read(root.join(&path)) {
                match String::from_utf8(bytes) {
                    Ok(text) => {
                        texts.insert(path, text);
                    }
                    Err(_) => others.push(path),
                }
            }
        }
        assert!(
            texts.contains_key(COMPATIBILITY_PAGE),
            "the scan found no {COMPATIBILITY_PAGE}: is the repository root right?"
        );
        Self::new(texts, others)
    }

    fn exists(&self, path: &str) -> bool {
        let path = path.trim_end_matches('/');
        path.is_empty() || self.files.contains(path) || self.dirs.contains(path)
    }

    fn headings(&self, page: &str) -> Vec<Heading> {
        self.texts
            .get(page)
            .map(|t| headings(t))
            .unwrap_or_default()
    }
}

/// Every file under `root`, without `target/` and `.git/`.
fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&rel)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = rel.join(&name);
            match entry.file_type() {
                Ok(t) if t.is_dir() => {
                    if name != "target" && name != ".git" {
                        stack.push(child);
                    }
                }
                Ok(_) => out.push(child.to_string_lossy().into_owned()),
                Err(_) => {}
            }
        }
    }
    out
}

/// `base` joined with `rel`, normalised; `None` when it leaves the repository root.
fn resolve(base: &str, rel: &str) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for component in Path::new(base).join(rel).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

fn dir_of(file: &str) -> String {
    Path::new(file)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_markdown(file: &str) -> bool {
    file.ends_with(".md")
}

// --- Markdown ------------------------------------------------------------------------------

/// GitHub's anchor for a heading text: inline link syntax reduced to its text, lower case,
/// every character other than a letter, digit, `_`, `-` or space dropped, spaces as `-`.
fn github_anchor(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // `[text](target)` → `text`.
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|c| open + c) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|e| close + e) else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..close]);
        rest = &rest[end + 1..];
    }
    text.push_str(rest);
    text.trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The headings of a Markdown text, outside fenced code blocks, with GitHub's `-1`, `-2`
/// suffixes for repeated anchors.
fn headings(text: &str) -> Vec<Heading> {
    let mut out = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut fence: Option<&str> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(marker) = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m)) {
            fence = match fence {
                None => Some(marker),
                Some(open) if open == marker => None,
                open => open,
            };
            continue;
        }
        if fence.is_some() {
            continue;
        }
        let level = line.chars().take_while(|c| *c == '#').count();
        if level == 0 || level > 6 || !line[level..].starts_with(' ') {
            continue;
        }
        let title = line[level..].trim().trim_end_matches('#').trim();
        let base = github_anchor(title);
        let count = seen.entry(base.clone()).or_insert(0);
        let anchor = if *count == 0 {
            base.clone()
        } else {
            format!("{base}-{count}")
        };
        *count += 1;
        let number = title
            .split_whitespace()
            .next()
            .map(|first| first.trim_end_matches('.'))
            .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit() || c == '.'))
            .map(str::to_owned);
        out.push(Heading {
            level,
            anchor,
            number,
            line: index + 1,
        });
    }
    out
}

/// An inline Markdown link: `[text](target)`, with the byte range of its text.
struct Link {
    text_start: usize,
    text_end: usize,
    target: String,
    at: usize,
}

/// `text` with every code span and fenced block blanked out (same byte offsets): what looks
/// like a link there is an example, not a link.
fn mask_code(text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let run = bytes[i..].iter().take_while(|b| **b == b'`').count();
        let fence = &text[i..i + run];
        // The closing run of the same length.
        let mut j = i + run;
        let close = loop {
            match text[j..].find(fence) {
                None => break None,
                Some(k) => {
                    let at = j + k;
                    let len = bytes[at..].iter().take_while(|b| **b == b'`').count();
                    if len == run {
                        break Some(at);
                    }
                    j = at + len;
                }
            }
        };
        // A code span ends with its paragraph; only a fenced block (three or more) crosses
        // blank lines.
        let close = close.filter(|c| run >= 3 || !text[i..*c].contains("\n\n"));
        let Some(close) = close else {
            i += run;
            continue;
        };
        for b in &mut bytes[i..close + run] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
        i = close + run;
    }
    bytes
}

/// The inline links of a Markdown text outside code (images included; reference-style links
/// are not used in this repository).
fn links(text: &str) -> Vec<Link> {
    let masked = mask_code(text);
    let bytes = masked.as_slice();
    let mut out = Vec::new();
    let masked_text = String::from_utf8_lossy(bytes);
    for (close, _) in masked_text.match_indices("](") {
        // The matching `[`, allowing nested brackets in the text.
        let mut depth = 0usize;
        let mut open = None;
        for i in (0..close).rev() {
            match bytes[i] {
                b']' => depth += 1,
                b'[' if depth == 0 => {
                    open = Some(i);
                    break;
                }
                b'[' => depth -= 1,
                b'\n' if i + 1 < close && bytes[i + 1] == b'\n' => break,
                _ => {}
            }
        }
        let Some(open) = open else { continue };
        let target_start = close + 2;
        let Some(len) = text[target_start..].find([')', ' ', '\n']) else {
            continue;
        };
        out.push(Link {
            text_start: open + 1,
            text_end: close,
            target: text[target_start..target_start + len].to_owned(),
            at: open,
        });
    }
    out
}

fn line_of(text: &str, at: usize) -> usize {
    text[..at].matches('\n').count() + 1
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-' | '~')
}

/// The section number right after a `§` at `at` (`5.4.1` in `§5.4.1,`).
fn number_after_section_sign(text: &str, at: usize) -> String {
    text[at + SECTION.len_utf8()..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect::<String>()
        .trim_end_matches('.')
        .to_owned()
}

// --- The checks ----------------------------------------------------------------------------

struct Report<'a> {
    file: &'a str,
    text: &'a str,
    problems: &'a mut Vec<String>,
}

impl Report<'_> {
    fn at(&mut self, at: usize, problem: impl std::fmt::Display) {
        let line = line_of(self.text, at);
        self.problems
            .push(format!("{}:{line}: {problem}", self.file));
    }
}

/// Every problem of one file.
fn check_file(repo: &Repo, file: &str, text: &str, problems: &mut Vec<String>) {
    let mut report = Report {
        file,
        text,
        problems,
    };
    check_outside_paths(&mut report);
    check_page_names(repo, &mut report);
    check_section_signs(repo, &mut report);
    check_acceptance_citations(&mut report);
    check_doc_paths(repo, &mut report);
    if is_markdown(file) {
        check_markdown_links(repo, &mut report);
    }
}

/// The old specification folder, by either of its spellings.
fn check_outside_paths(report: &mut Report<'_>) {
    let old = [concat!("..", "/shared"), concat!("shared", "/spec")];
    for needle in old {
        for (at, _) in report.text.match_indices(needle) {
            report.at(at, format!("refers to `{needle}`, outside the repository"));
        }
    }
}

/// Bare page names: `beyond.md` anywhere; in code, `sessions.md` for a page that lives in
/// `docs/` or `docs/reference/` (write the folder); in Markdown, a name that is not a page
/// next to the file.
fn check_page_names(repo: &Repo, report: &mut Report<'_>) {
    let text = report.text;
    let markdown = is_markdown(report.file);
    let dir = dir_of(report.file);
    let mut found = Vec::new();
    for (at, _) in text.match_indices(".md") {
        let after = text[at + 3..].chars().next();
        if after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let start = text[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
            .last()
            .map_or(at, |(i, _)| i);
        // Only slash-free names: paths are checked by `check_doc_paths` and the link check.
        if start == at || text[..start].ends_with(['/', '.', ':', '\\']) {
            continue;
        }
        found.push((start, &text[start..at + 3]));
    }
    for (at, name) in found {
        if SPEC_ONLY_PAGES.contains(&name) {
            report.at(
                at,
                format!("cites `{name}`, a specification file that is not in the repository"),
            );
            continue;
        }
        let elsewhere = name != "README.md"
            && (repo.exists(&format!("{REFERENCE_DIR}/{name}"))
                || repo.exists(&format!("docs/{name}")));
        if !elsewhere {
            continue;
        }
        if !markdown {
            report.at(
                at,
                format!(
                    "names `{name}` without its folder: cite `docs/reference/<page>.md#<anchor>` \
                     or `docs/<guide>.md`"
                ),
            );
        } else if !resolve(&dir, name).is_some_and(|p| repo.exists(&p)) {
            report.at(
                at,
                format!("names `{name}`, which is not a page next to this one"),
            );
        }
    }
}

/// Every `§` must be a section that exists (see the module documentation).
fn check_section_signs(repo: &Repo, report: &mut Report<'_>) {
    let text = report.text;
    let markdown = is_markdown(report.file);
    let page_links = if markdown { links(text) } else { Vec::new() };
    let own_numbers: BTreeSet<String> = if markdown {
        headings(text)
            .into_iter()
            .filter_map(|h| h.number)
            .collect()
    } else {
        BTreeSet::new()
    };
    for (at, _) in text.match_indices(SECTION) {
        let number = number_after_section_sign(text, at);
        if number.is_empty() {
            report.at(at, "a section sign without a section number");
            continue;
        }
        let before = text[..at].trim_end();
        // `RFC 9110 §11.1`.
        let digits = before.trim_end_matches(|c: char| c.is_ascii_digit());
        if digits.len() < before.len() && digits.trim_end().ends_with("RFC") {
            continue;
        }
        // Inside the text of a link: the target section must carry the number.
        if let Some(link) = page_links
            .iter()
            .find(|l| l.text_start <= at && at < l.text_end)
        {
            match link_target(repo, report.file, &link.target) {
                Err(problem) => report.at(at, problem),
                Ok(None) => report.at(
                    at,
                    format!(
                        "`{SECTION}{number}` links to `{}`, not to a section",
                        link.target
                    ),
                ),
                Ok(Some(heading)) => {
                    if heading.number.as_deref() != Some(number.as_str()) {
                        report.at(
                            at,
                            format!(
                                "link text says `{SECTION}{number}` but `{}` is section {}",
                                link.target,
                                heading.number.as_deref().unwrap_or("(unnumbered)")
                            ),
                        );
                    }
                }
            }
            continue;
        }
        // `docs/federation.md §3`, `` `docs/x.md` §3 ``: a section of the page named before.
        let named = before.trim_end_matches('`');
        if named.ends_with(".md") {
            let start = named
                .char_indices()
                .rev()
                .take_while(|(_, c)| is_path_char(*c))
                .last()
                .map_or(named.len(), |(i, _)| i);
            let page = &named[start..];
            let resolved = [Some(page.to_owned()), resolve(&dir_of(report.file), page)]
                .into_iter()
                .flatten()
                .find(|p| repo.texts.contains_key(p));
            match resolved {
                Some(page) if has_number(repo, &page, &number) => {}
                Some(page) => report.at(at, format!("`{page}` has no section {number}")),
                None => report.at(
                    at,
                    format!(
                        "`{page} {SECTION}{number}` cites a page that is not in the repository"
                    ),
                ),
            }
            continue;
        }
        // The page's own sections, in Markdown prose.
        if markdown && own_numbers.contains(&number) {
            continue;
        }
        report.at(
            at,
            format!(
                "`{SECTION}{number}` is not a section of this repository: cite \
                 `docs/reference/<page>.md#<anchor>`"
            ),
        );
    }
}

fn has_number(repo: &Repo, page: &str, number: &str) -> bool {
    repo.headings(page)
        .iter()
        .any(|h| h.number.as_deref() == Some(number))
}

/// `acceptance 205`, `Acceptance group P`, `acceptance item 26`, `Acceptance L158`.
fn check_acceptance_citations(report: &mut Report<'_>) {
    let text = report.text;
    // ASCII lower case keeps byte offsets.
    let lower = text.to_ascii_lowercase();
    for (at, word) in lower.match_indices("acceptance") {
        let mut rest = text[at + word.len()..].trim_start_matches([' ', '\t']);
        for filler in ["group ", "groups ", "item ", "items ", "test ", "tests "] {
            if let Some(stripped) = rest.strip_prefix(filler) {
                rest = stripped.trim_start();
            }
        }
        let mut chars = rest.chars();
        let first = chars.next();
        let second = chars.next();
        let cites = match first {
            Some(c) if c.is_ascii_digit() => true,
            Some('L') => second.is_some_and(|c| c.is_ascii_digit()),
            Some(c) if c.is_ascii_uppercase() => !second.is_some_and(char::is_alphanumeric),
            _ => false,
        };
        if cites {
            report.at(
                at,
                "cites the acceptance checklist, which is not in the repository: name the \
                 `docs/reference/<page>.md#<anchor>` the test checks",
            );
        }
    }
}

/// `docs/<page>.md` and `docs/<page>.md#<anchor>`, read from the repository root, in any file.
fn check_doc_paths(repo: &Repo, report: &mut Report<'_>) {
    let text = report.text;
    for (at, _) in text.match_indices("docs/") {
        if text[..at].chars().next_back().is_some_and(is_path_char) {
            continue;
        }
        let path_len = text[at..]
            .find(|c: char| !is_path_char(c))
            .unwrap_or(text.len() - at);
        let path = text[at..at + path_len].trim_end_matches('.');
        if !path.ends_with(".md") {
            continue;
        }
        let rest = &text[at + path.len()..];
        let anchor = rest.strip_prefix('#').map(|r| {
            let len = r
                .find(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(r.len());
            &r[..len]
        });
        // Code may name a file under `docs/` as test data (`docs/spec.md` as an evidence path);
        // there, a guide path counts as a citation only with an anchor.
        let citation = is_markdown(report.file)
            || path.starts_with(&format!("{REFERENCE_DIR}/"))
            || anchor.is_some();
        if !citation {
            continue;
        }
        if !repo.texts.contains_key(path) {
            report.at(at, format!("`{path}` does not exist"));
        } else if let Some(anchor) = anchor
            && !repo.headings(path).iter().any(|h| h.anchor == anchor)
        {
            report.at(at, format!("`{path}` has no heading `#{anchor}`"));
        }
    }
}

/// Every relative link of a Markdown page: the file exists inside the repository and the
/// anchor is a heading of it.
fn check_markdown_links(repo: &Repo, report: &mut Report<'_>) {
    for link in links(report.text) {
        if let Err(problem) = link_target(repo, report.file, &link.target) {
            report.at(link.at, problem);
        }
    }
}

/// The heading a relative link points at (`None` without an anchor or for an external link),
/// or why it cannot be followed.
fn link_target(repo: &Repo, from: &str, target: &str) -> Result<Option<Heading>, String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return Ok(None);
    }
    if target.starts_with('/') {
        return Err(format!(
            "`{target}` is an absolute path, outside the repository"
        ));
    }
    let (path, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    let file = if path.is_empty() {
        from.to_owned()
    } else {
        resolve(&dir_of(from), path).ok_or_else(|| format!("`{target}` leaves the repository"))?
    };
    if !repo.exists(&file) {
        return Err(format!("`{target}`: `{file}` does not exist"));
    }
    let Some(anchor) = anchor else {
        return Ok(None);
    };
    if !is_markdown(&file) {
        return Ok(None);
    }
    repo.headings(&file)
        .into_iter()
        .find(|h| h.anchor == anchor)
        .map(Some)
        .ok_or_else(|| format!("`{target}`: `{file}` has no heading `#{anchor}`"))
}

/// Every marker of the reference pages lies in a section that the matching part of the
/// compatibility page links to (that section or one containing it).
fn check_markers(repo: &Repo, problems: &mut Vec<String>) {
    let Some(compat) = repo.texts.get(COMPATIBILITY_PAGE) else {
        problems.push(format!("{COMPATIBILITY_PAGE} does not exist"));
        return;
    };
    // The compatibility page's parts, by heading anchor; each marker's links come from its part.
    let parts = [
        ("[kept]", "kept-exactly"),
        ("[fixed]", "fixed-or-changed"),
        ("[added]", "added"),
    ];
    let compat_headings = headings(compat);
    let part_of_line = |line: usize| -> Option<String> {
        compat_headings
            .iter()
            .rev()
            .find(|h| h.level == 2 && h.line <= line)
            .map(|h| h.anchor.clone())
    };
    let mut linked: BTreeSet<(String, String, String)> = BTreeSet::new();
    for link in links(compat) {
        let Some(part) = part_of_line(line_of(compat, link.at)) else {
            continue;
        };
        let Some((path, anchor)) = link.target.split_once('#') else {
            continue;
        };
        if let Some(page) = resolve(&dir_of(COMPATIBILITY_PAGE), path) {
            linked.insert((part, page, anchor.to_owned()));
        }
    }
    for (page, text) in &repo.texts {
        // The reference's README defines the markers; the other pages use them.
        if !page.starts_with(&format!("{REFERENCE_DIR}/"))
            || !is_markdown(page)
            || page.ends_with("/README.md")
        {
            continue;
        }
        let page_headings = headings(text);
        for (marker, part) in parts {
            for (at, _) in text.match_indices(marker) {
                let line = line_of(text, at);
                // The enclosing sections, innermost first.
                let mut enclosing: Vec<&Heading> = Vec::new();
                let mut level = usize::MAX;
                for heading in page_headings.iter().rev().filter(|h| h.line <= line) {
                    if heading.level < level && heading.level > 1 {
                        enclosing.push(heading);
                        level = heading.level;
                    }
                }
                let covered = enclosing
                    .iter()
                    .any(|h| linked.contains(&(part.to_owned(), page.clone(), h.anchor.clone())));
                if !covered {
                    let section = enclosing
                        .first()
                        .map_or_else(|| "(top)".to_owned(), |h| format!("#{}", h.anchor));
                    problems.push(format!(
                        "{page}:{line}: {marker} in {section} has no row in the \"{part}\" part \
                         of {COMPATIBILITY_PAGE} linking to this section or one containing it"
                    ));
                }
            }
        }
    }
}

fn problems_of(repo: &Repo) -> Vec<String> {
    let mut problems = Vec::new();
    for (file, text) in &repo.texts {
        // This file spells the bad citations its own tests feed to the checks.
        if file == THIS_FILE || FROZEN_DIRS.iter().any(|dir| file.starts_with(dir)) {
            continue;
        }
        check_file(repo, file, text, &mut problems);
    }
    check_markers(repo, &mut problems);
    problems
}

#[test]
fn citations_stay_in_the_repository_and_resolve() {
    let repo = Repo::load();
    let problems = problems_of(&repo);
    assert!(
        problems.is_empty(),
        "{} citation problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// --- Each rule fails on a bad citation ------------------------------------------------------

/// A small repository: a reference page, a guide, the compatibility page and one code file.
fn sample(code: &str, guide: &str, compat_extra: &str) -> Vec<String> {
    let s = SECTION;
    let texts = BTreeMap::from([
        (
            "docs/reference/sessions.md".to_owned(),
            format!(
                "# Sessions\n\n## 4. Locking\n\nA lease. **[fixed]**\n\n### 4.1 Renewal\n\n\
                 See {s}4 and [{s}4](#4-locking).\n\n## 5. Crash recovery\n\nNo event. **[kept]**\n"
            ),
        ),
        ("docs/federation.md".to_owned(), guide.to_owned()),
        (
            COMPATIBILITY_PAGE.to_owned(),
            format!(
                "# Compatibility\n\n## Kept exactly\n\n| a | [sessions {s}5](reference/sessions.md#5-crash-recovery) |\n\n\
                 ## Fixed or changed\n\n| b | [sessions {s}4](reference/sessions.md#4-locking) |\n\n\
                 ## Added\n\n{compat_extra}\n"
            ),
        ),
        ("crates/x/src/lib.rs".to_owned(), code.to_owned()),
    ]);
    problems_of(&Repo::new(texts, []))
}

const GOOD_GUIDE: &str =
    "# Federation\n\n## 3. Config file\n\nSee [sessions](reference/sessions.md#4-locking).\n";

#[test]
fn checks_accept_good_citations() {
    let s = SECTION;
    let code = format!(
        "//! Locking (`docs/reference/sessions.md#4-locking`); the format is in docs/federation.md {s}3.\n\
         // Case-insensitive (RFC 9110 {s}11.1).\n"
    );
    assert_eq!(sample(&code, GOOD_GUIDE, ""), Vec::<String>::new());
}

#[test]
fn checks_report_the_old_specification_folder() {
    let code = concat!("//! See ../", "shared/spec/sessions.md.\n");
    let problems = sample(code, GOOD_GUIDE, "");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("crates/x/src/lib.rs:1: refers to")),
        "{problems:#?}"
    );
}

#[test]
fn checks_report_bare_page_names() {
    let problems = sample("//! (`beyond.md`)\n// `sessions.md`\n", GOOD_GUIDE, "");
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].contains(":1: cites `beyond.md`"),
        "{problems:#?}"
    );
    assert!(
        problems[1].contains(":2: names `sessions.md` without its folder"),
        "{problems:#?}"
    );
}

#[test]
fn checks_report_section_signs_that_are_not_reference_links() {
    let s = SECTION;
    let code = format!("//! Locking (`sessions.md` {s}4).\n//! Order {s}2.4.\n");
    let problems = sample(&code, GOOD_GUIDE, "");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("crates/x/src/lib.rs:1:")
                && p.contains(&format!(
                    "`sessions.md {s}4` cites a page that is not in the repository"
                ))),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("crates/x/src/lib.rs:2:") && p.contains("is not a section")),
        "{problems:#?}"
    );
    // A guide's number that its page does not have, and a link text that disagrees.
    let guide = format!(
        "# Federation\n\n## 3. Config file\n\nSee {s}7 and [sessions {s}5](reference/sessions.md#4-locking).\n"
    );
    let problems = sample("", &guide, "");
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("docs/federation.md:5:")
                && p.contains(&format!("`{s}7` is not a section"))),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains(&format!("link text says `{s}5`"))),
        "{problems:#?}"
    );
}

#[test]
fn checks_report_acceptance_citations() {
    let problems = sample(
        "//! Acceptance group P.\n// acceptance 209-211\n// the acceptance of a lease\n",
        GOOD_GUIDE,
        "",
    );
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].contains(":1: cites the acceptance checklist"));
    assert!(problems[1].contains(":2: cites the acceptance checklist"));
}

#[test]
fn checks_report_dangling_pages_and_anchors() {
    let code = "//! `docs/reference/sessions.md#9-database-schema`, docs/reference/nope.md\n";
    let guide = "# Federation\n\n## 3. Config\n\n[a](reference/sessions.md#5-crash-recoveries) \
                 [b](reference/nope.md) [c](../../outside.md)\n";
    let problems = sample(code, guide, "");
    let expected = [
        "crates/x/src/lib.rs:1: `docs/reference/sessions.md` has no heading `#9-database-schema`",
        "crates/x/src/lib.rs:1: `docs/reference/nope.md` does not exist",
        "docs/federation.md:5: `reference/sessions.md#5-crash-recoveries`: `docs/reference/sessions.md` has no heading `#5-crash-recoveries`",
        "docs/federation.md:5: `reference/nope.md`: `docs/reference/nope.md` does not exist",
        "docs/federation.md:5: `../../outside.md` leaves the repository",
    ];
    for want in expected {
        assert!(
            problems.iter().any(|p| p == want),
            "{want}\nnot in {problems:#?}"
        );
    }
}

#[test]
fn checks_report_markers_without_a_compatibility_row() {
    // Sections 4 and 5 are linked from the right parts: nothing to report.
    assert_eq!(sample("", GOOD_GUIDE, ""), Vec::<String>::new());
    // A new [added] marker in 4.1: its section and section 4 are linked only from "fixed".
    let s = SECTION;
    let texts = BTreeMap::from([
        (
            "docs/reference/sessions.md".to_owned(),
            "# Sessions\n\n## 4. Locking\n\n### 4.1 Renewal\n\nEvery third. **[added]**\n"
                .to_owned(),
        ),
        (
            COMPATIBILITY_PAGE.to_owned(),
            format!(
                "# Compatibility\n\n## Kept exactly\n\n## Fixed or changed\n\n\
                 [{s}4](reference/sessions.md#4-locking)\n\n## Added\n\n\
                 [{s}4](reference/sessions.md#4-locking) is listed below the next heading only.\n"
            ),
        ),
    ]);
    assert_eq!(
        problems_of(&Repo::new(texts.clone(), [])),
        Vec::<String>::new()
    );
    let mut without = texts;
    without.insert(
        COMPATIBILITY_PAGE.to_owned(),
        format!(
            "# Compatibility\n\n## Kept exactly\n\n## Fixed or changed\n\n\
             [{s}4](reference/sessions.md#4-locking)\n\n## Added\n"
        ),
    );
    let problems = problems_of(&Repo::new(without, []));
    assert_eq!(
        problems,
        [
            "docs/reference/sessions.md:7: [added] in #41-renewal has no row in the \"added\" part of docs/compatibility.md linking to this section or one containing it"
        ],
    );
}

#[test]
fn github_anchors() {
    for (heading, anchor) in [
        ("5.4 Prompt construction", "54-prompt-construction"),
        ("5. `agent_continue_session`", "5-agent_continue_session"),
        (
            "Warnings (in this order, when applicable)",
            "warnings-in-this-order-when-applicable",
        ),
        (
            "1. What mediation is — and is not",
            "1-what-mediation-is--and-is-not",
        ),
        ("Recipes **[guidance]**", "recipes-guidance"),
        ("MCP tasks (SEP-2663)", "mcp-tasks-sep-2663"),
        ("See [the guide](x.md) here", "see-the-guide-here"),
    ] {
        assert_eq!(github_anchor(heading), anchor, "{heading}");
    }
    let in_code =
        "`[a](nope.md)` and\n\n```md\n[b](nope.md)\n```\n\n[c](here.md) ` lone\n\n[d](x.md)";
    let targets: Vec<String> = links(in_code).into_iter().map(|l| l.target).collect();
    assert_eq!(targets, ["here.md", "x.md"]);
    let hs = headings("# A\n\n```sh\n# not a heading\n```\n\n## B\n\n## B\n");
    let anchors: Vec<&str> = hs.iter().map(|h| h.anchor.as_str()).collect();
    assert_eq!(anchors, ["a", "b", "b-1"]);
}
