//! Integration tests of the built-in workspace tools: the sandbox, the limits, the profiles,
//! every tool's output and the audit events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent_core::{Event, Profile, ToolCallContext, ToolProvider};
use agent_testkit::store::{MemStore, Method};
use agent_tools::{Tool, ToolLimits, WorkspaceTools};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------------

/// `root/work` is the session's working directory and the allowed directory; `root/outside`
/// holds what must stay unreachable.
struct Fixture {
    _dir: tempfile::TempDir,
    work: PathBuf,
    outside: PathBuf,
    store: Arc<MemStore>,
    tools: WorkspaceTools,
}

impl Fixture {
    fn new() -> Self {
        Self::build(
            ToolLimits::default(),
            |work| vec![work.to_path_buf()],
            false,
        )
    }

    fn with_limits(limits: ToolLimits) -> Self {
        Self::build(limits, |work| vec![work.to_path_buf()], false)
    }

    fn build(limits: ToolLimits, allowed: impl Fn(&Path) -> Vec<PathBuf>, fail: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let work = root.join("work");
        let outside = root.join("outside");
        fs::create_dir(&work).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret.txt"), "top secret\n").unwrap();
        let store = Arc::new(MemStore::new());
        if fail {
            store.fail(Method::AppendEvents);
        }
        let tools = WorkspaceTools::new(store.clone(), allowed(&work), limits);
        Self {
            _dir: dir,
            work,
            outside,
            store,
            tools,
        }
    }

    fn ctx(&self, profile: Profile) -> ToolCallContext {
        ToolCallContext {
            session_id: "sess-1".into(),
            turn_index: 3,
            profile,
            working_directory: Some(self.work.clone()),
        }
    }

    async fn call(&self, name: &str, input: Value) -> Result<String, String> {
        self.tools
            .call(&self.ctx(Profile::General), name, input)
            .await
    }

    async fn verify_call(&self, name: &str, input: Value) -> Result<String, String> {
        self.tools
            .call(&self.ctx(Profile::Verification), name, input)
            .await
    }

    fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        let path = self.work.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.work.join(rel)).unwrap()
    }

    fn events(&self) -> Vec<(String, Event)> {
        self.store.appended()
    }

    /// The `error_message` of the last `workspace_tool_result` event.
    fn last_audit(&self) -> Value {
        let events = self.events();
        events.last().unwrap().1.payload["error_message"].clone()
    }
}

fn outside_wd(path: &str) -> String {
    format!("Access denied: '{path}' is outside the session's working directory")
}

fn small_limits() -> ToolLimits {
    ToolLimits {
        max_read_bytes: 40,
        max_line_chars: 20,
        max_write_bytes: 64,
        max_entries: 3,
        max_grep_matches: 2,
        max_files_scanned: 100,
        max_grep_file_bytes: 128,
    }
}

// ---------------------------------------------------------------------------------------------
// Catalogue and profiles
// ---------------------------------------------------------------------------------------------

#[test]
fn catalogue_by_profile() {
    let fx = Fixture::new();
    let names = |profile| -> Vec<String> {
        fx.tools
            .visible_tools(profile)
            .into_iter()
            .map(|t| t.name)
            .collect()
    };
    assert_eq!(
        names(Profile::General),
        [
            "read_file",
            "list_directory",
            "glob",
            "grep",
            "write_file",
            "edit_file"
        ]
    );
    assert_eq!(
        names(Profile::Verification),
        ["read_file", "list_directory", "glob", "grep"]
    );
    assert!(!fx.tools.federated());

    let valid = regex::Regex::new("^[a-zA-Z0-9_-]{1,64}$").unwrap();
    for tool in fx.tools.visible_tools(Profile::General) {
        assert!(valid.is_match(&tool.name), "{}", tool.name);
        assert!(!tool.description.is_empty());
        let schema = &tool.input_schema;
        assert_eq!(schema["type"], "object");
        for required in schema["required"].as_array().unwrap() {
            let key = required.as_str().unwrap();
            assert!(schema["properties"].get(key).is_some(), "{key}");
        }
    }
    let read = Tool::ReadFile.definition(&ToolLimits::default());
    assert_eq!(read.input_schema["required"], json!(["path"]));
    assert!(read.description.contains("262144 bytes"));
}

#[tokio::test]
async fn verification_cannot_write_or_edit() {
    let fx = Fixture::new();
    fx.write("a.txt", "one\n");
    assert_eq!(
        fx.verify_call("write_file", json!({"path": "new.txt", "content": "x"}))
            .await,
        Err("Tool 'write_file' is not available to the read-only profile 'verification'".into())
    );
    assert_eq!(
        fx.verify_call(
            "edit_file",
            json!({"path": "a.txt", "old_string": "one", "new_string": "two"})
        )
        .await,
        Err("Tool 'edit_file' is not available to the read-only profile 'verification'".into())
    );
    assert!(!fx.work.join("new.txt").exists());
    assert_eq!(fx.read("a.txt"), "one\n");
    // Reading is fine.
    assert_eq!(
        fx.verify_call("read_file", json!({"path": "a.txt"})).await,
        Ok("one\n".into())
    );
}

#[tokio::test]
async fn unknown_tool_and_bad_input() {
    let fx = Fixture::new();
    assert_eq!(
        fx.call("run_shell", json!({})).await,
        Err("Unknown workspace tool 'run_shell'".into())
    );
    assert_eq!(
        fx.call("read_file", json!({})).await,
        Err("Invalid input for read_file: missing field `path`".into())
    );
    assert_eq!(
        fx.call("read_file", json!("a.txt")).await,
        Err("Invalid input for read_file: expected a JSON object".into())
    );
    assert_eq!(
        fx.call("read_file", json!({"path": 7})).await,
        Err("Invalid input for read_file: invalid type: integer `7`, expected a string".into())
    );
    // The audit text never carries the value.
    assert_eq!(fx.last_audit(), json!("Invalid input for read_file"));
}

#[tokio::test]
async fn no_working_directory_is_refused() {
    let fx = Fixture::new();
    let ctx = ToolCallContext {
        working_directory: None,
        ..fx.ctx(Profile::General)
    };
    assert_eq!(
        fx.tools.call(&ctx, "list_directory", json!({})).await,
        Err("This session has no working directory; the workspace tools cannot be used".into())
    );
}

// ---------------------------------------------------------------------------------------------
// Sandbox
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn dot_dot_traversal_is_refused() {
    let fx = Fixture::new();
    fx.write("sub/a.txt", "a\n");
    for path in [
        "../outside/secret.txt",
        "sub/../../outside/secret.txt",
        "..",
    ] {
        assert_eq!(
            fx.call("read_file", json!({"path": path})).await,
            Err(outside_wd(path))
        );
    }
    assert_eq!(
        fx.call("list_directory", json!({"path": ".."})).await,
        Err(outside_wd(".."))
    );
    assert_eq!(
        fx.call(
            "write_file",
            json!({"path": "../outside/new.txt", "content": "x"})
        )
        .await,
        Err(outside_wd("../outside/new.txt"))
    );
    assert!(!fx.outside.join("new.txt").exists());
    assert_eq!(
        fx.call("grep", json!({"pattern": "secret", "path": "../outside"}))
            .await,
        Err(outside_wd("../outside"))
    );
    assert_eq!(
        fx.call("glob", json!({"pattern": "*", "path": "../outside"}))
            .await,
        Err(outside_wd("../outside"))
    );
    // `..` that stays inside is fine.
    assert_eq!(
        fx.call("read_file", json!({"path": "sub/../sub/a.txt"}))
            .await,
        Ok("a\n".into())
    );
    // Patterns cannot climb either: they only ever match paths below the search directory.
    assert_eq!(
        fx.call("glob", json!({"pattern": "../outside/*"})).await,
        Ok("No files match '../outside/*'".into())
    );
}

#[tokio::test]
async fn absolute_paths_outside_are_refused() {
    let fx = Fixture::new();
    let secret = fx.outside.join("secret.txt").display().to_string();
    assert_eq!(
        fx.call("read_file", json!({"path": secret})).await,
        Err(outside_wd(&secret))
    );
    assert_eq!(
        fx.call("read_file", json!({"path": "/etc/passwd"})).await,
        Err(outside_wd("/etc/passwd"))
    );
    let target = fx.outside.join("new.txt").display().to_string();
    assert_eq!(
        fx.call("write_file", json!({"path": target, "content": "x"}))
            .await,
        Err(outside_wd(&target))
    );
    assert!(!fx.outside.join("new.txt").exists());
    // An absolute path inside is fine.
    fx.write("a.txt", "a\n");
    let inside = fx.work.join("a.txt").display().to_string();
    assert_eq!(
        fx.call("read_file", json!({"path": inside})).await,
        Ok("a\n".into())
    );
}

#[tokio::test]
async fn symlinked_file_pointing_out_is_refused() {
    let fx = Fixture::new();
    symlink(fx.outside.join("secret.txt"), fx.work.join("leak.txt")).unwrap();
    symlink("../outside/secret.txt", fx.work.join("rel-leak.txt")).unwrap();
    for path in ["leak.txt", "rel-leak.txt"] {
        assert_eq!(
            fx.call("read_file", json!({"path": path})).await,
            Err(outside_wd(path))
        );
        assert_eq!(
            fx.call("write_file", json!({"path": path, "content": "pwned"}))
                .await,
            Err(outside_wd(path))
        );
        assert_eq!(
            fx.call(
                "edit_file",
                json!({"path": path, "old_string": "top", "new_string": "no"})
            )
            .await,
            Err(outside_wd(path))
        );
    }
    assert_eq!(
        fs::read_to_string(fx.outside.join("secret.txt")).unwrap(),
        "top secret\n"
    );
    // A dangling link to a place outside cannot be used to create a file there either.
    symlink(fx.outside.join("planted.txt"), fx.work.join("dangling")).unwrap();
    assert_eq!(
        fx.call("write_file", json!({"path": "dangling", "content": "x"}))
            .await,
        Err(outside_wd("dangling"))
    );
    assert!(!fx.outside.join("planted.txt").exists());
    // Walks skip them.
    assert_eq!(
        fx.call("grep", json!({"pattern": "secret"})).await,
        Ok("No matches for 'secret'".into())
    );
    assert_eq!(
        fx.call("glob", json!({"pattern": "*"})).await,
        Ok("No files match '*'".into())
    );
    assert_eq!(
        fx.call("list_directory", json!({})).await,
        Ok("[link] dangling -> (outside the sandbox)\n\
            [link] leak.txt -> (outside the sandbox)\n\
            [link] rel-leak.txt -> (outside the sandbox)"
            .into())
    );
}

#[tokio::test]
async fn symlinked_directory_pointing_out_is_refused() {
    let fx = Fixture::new();
    symlink(&fx.outside, fx.work.join("linkdir")).unwrap();
    for (tool, input) in [
        ("read_file", json!({"path": "linkdir/secret.txt"})),
        ("list_directory", json!({"path": "linkdir"})),
        ("glob", json!({"pattern": "*", "path": "linkdir"})),
        ("grep", json!({"pattern": "secret", "path": "linkdir"})),
        (
            "write_file",
            json!({"path": "linkdir/new/deeper.txt", "content": "x"}),
        ),
    ] {
        let path = input["path"].as_str().unwrap().to_owned();
        assert_eq!(fx.call(tool, input).await, Err(outside_wd(&path)), "{tool}");
    }
    assert!(!fx.outside.join("new").exists());
    // Walks from the working directory do not descend into it.
    assert_eq!(
        fx.call("grep", json!({"pattern": "secret"})).await,
        Ok("No matches for 'secret'".into())
    );
    assert_eq!(
        fx.call("glob", json!({"pattern": "**/*"})).await,
        Ok("No files match '**/*'".into())
    );
}

#[tokio::test]
async fn symlinks_inside_pointing_inside_are_followed() {
    let fx = Fixture::new();
    fx.write("real/a.txt", "alpha\n");
    symlink("real/a.txt", fx.work.join("alias.txt")).unwrap();
    symlink(fx.work.join("real"), fx.work.join("realdir")).unwrap();
    assert_eq!(
        fx.call("read_file", json!({"path": "alias.txt"})).await,
        Ok("alpha\n".into())
    );
    assert_eq!(
        fx.call("read_file", json!({"path": "realdir/a.txt"})).await,
        Ok("alpha\n".into())
    );
    assert_eq!(
        fx.call("list_directory", json!({})).await,
        Ok("[link] alias.txt -> real/a.txt\n[dir]  real/\n[link] realdir -> real".into())
    );
    // A symlinked file is searched under its own name; a symlinked directory is not walked
    // (its files are found under their real path).
    assert_eq!(
        fx.call("grep", json!({"pattern": "alpha"})).await,
        Ok("alias.txt:1:alpha\nreal/a.txt:1:alpha".into())
    );
    assert_eq!(
        fx.call("glob", json!({"pattern": "**/*.txt"})).await,
        Ok("alias.txt\nreal/a.txt".into())
    );
    // Writing through the link replaces the target and keeps the link.
    assert_eq!(
        fx.call(
            "write_file",
            json!({"path": "alias.txt", "content": "beta\n"})
        )
        .await,
        Ok("Updated real/a.txt (5 bytes)".into())
    );
    assert!(
        fs::symlink_metadata(fx.work.join("alias.txt"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fx.read("real/a.txt"), "beta\n");
}

#[tokio::test]
async fn inside_the_working_directory_but_outside_the_allowed_dirs() {
    let fx = Fixture::build(
        ToolLimits::default(),
        |work| vec![work.join("allowed")],
        false,
    );
    fx.write("allowed/a.txt", "a\n");
    fx.write("private.txt", "p\n");
    assert_eq!(
        fx.call("read_file", json!({"path": "private.txt"})).await,
        Err("Access denied: 'private.txt' is outside the allowed directories".into())
    );
    assert_eq!(
        fx.call("list_directory", json!({})).await,
        Err("Access denied: '.' is outside the allowed directories".into())
    );
    assert_eq!(
        fx.call("write_file", json!({"path": "new.txt", "content": "x"}))
            .await,
        Err("Access denied: 'new.txt' is outside the allowed directories".into())
    );
    assert_eq!(
        fx.last_audit(),
        json!("Access denied: path is outside the allowed directories")
    );
    assert_eq!(
        fx.call("read_file", json!({"path": "allowed/a.txt"})).await,
        Ok("a\n".into())
    );
    // An allowed directory the working directory does not contain is still out of reach.
    let fx = Fixture::build(
        ToolLimits::default(),
        |work| vec![work.to_path_buf(), work.parent().unwrap().join("outside")],
        false,
    );
    assert_eq!(
        fx.call("read_file", json!({"path": "../outside/secret.txt"}))
            .await,
        Err(outside_wd("../outside/secret.txt"))
    );
}

// ---------------------------------------------------------------------------------------------
// read_file
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn read_file_whole_and_in_parts() {
    let fx = Fixture::new();
    fx.write("five.txt", "1\n2\n3\n4\n5");
    assert_eq!(
        fx.call("read_file", json!({"path": "five.txt"})).await,
        Ok("1\n2\n3\n4\n5".into())
    );
    assert_eq!(
        fx.call(
            "read_file",
            json!({"path": "five.txt", "offset": 2, "limit": 2})
        )
        .await,
        Ok("2\n3\n[Showing lines 2-3; the file continues. Use offset=4 to read more.]".into())
    );
    assert_eq!(
        fx.call(
            "read_file",
            json!({"path": "five.txt", "offset": 4, "limit": 2})
        )
        .await,
        Ok("4\n5".into())
    );
    assert_eq!(
        fx.call("read_file", json!({"path": "five.txt", "offset": 9}))
            .await,
        Err("offset 9 is past the end of 'five.txt', which has 5 lines".into())
    );
    assert_eq!(
        fx.call("read_file", json!({"path": "five.txt", "offset": 0}))
            .await,
        Err("offset must be at least 1 (the first line is line 1)".into())
    );
    assert_eq!(
        fx.call("read_file", json!({"path": "five.txt", "limit": 0}))
            .await,
        Err("limit must be at least 1".into())
    );
    fx.write("empty.txt", "");
    assert_eq!(
        fx.call("read_file", json!({"path": "empty.txt"})).await,
        Ok("[empty file]".into())
    );
    assert_eq!(
        fx.call("read_file", json!({"path": "missing.txt"})).await,
        Err("No such file or directory: 'missing.txt'".into())
    );
    assert_eq!(fx.last_audit(), json!("No such file or directory"));
    fs::create_dir(fx.work.join("dir")).unwrap();
    assert_eq!(
        fx.call("read_file", json!({"path": "dir"})).await,
        Err("'dir' is a directory; use list_directory to see its entries".into())
    );
}

#[tokio::test]
async fn huge_files_are_read_truncated_with_a_note() {
    let fx = Fixture::with_limits(small_limits());
    // 10 lines of 10 bytes: the 40-byte budget holds four.
    let content: String = (0..10).map(|i| format!("line {i:03}.\n")).collect();
    fx.write("big.txt", &content);
    assert_eq!(
        fx.call("read_file", json!({"path": "big.txt"})).await,
        Ok("line 000.\nline 001.\nline 002.\nline 003.\n\
            [Truncated: read_file returns at most 40 bytes; showing lines 1-4. Use offset=5 to read more.]"
            .into())
    );
    assert_eq!(
        fx.call("read_file", json!({"path": "big.txt", "offset": 9}))
            .await,
        Ok("line 008.\nline 009.\n".into())
    );
    // Long lines are cut at max_line_chars.
    let fx = Fixture::with_limits(ToolLimits {
        max_line_chars: 20,
        ..ToolLimits::default()
    });
    fx.write("long.txt", format!("{}\nshort\n", "x".repeat(500)));
    assert_eq!(
        fx.call("read_file", json!({"path": "long.txt"})).await,
        Ok(format!("{} … [line truncated]\nshort\n", "x".repeat(20)))
    );
}

#[tokio::test]
async fn huge_file_with_default_limits() {
    let fx = Fixture::new();
    let line = format!("{}\n", "y".repeat(99));
    fx.write("huge.txt", line.repeat(30_000)); // 3 MB
    let out = fx
        .call("read_file", json!({"path": "huge.txt"}))
        .await
        .unwrap();
    let (body, note) = out.rsplit_once('\n').unwrap();
    assert_eq!(body.len() + 1, 2621 * 100);
    assert_eq!(
        note,
        "[Truncated: read_file returns at most 262144 bytes; showing lines 1-2621. Use offset=2622 to read more.]"
    );
}

#[tokio::test]
async fn binary_files_are_refused_by_read_and_skipped_by_grep() {
    let fx = Fixture::new();
    fx.write("blob.bin", b"needle\x00\x01\x02needle");
    fx.write("text.txt", "a needle\n");
    assert_eq!(
        fx.call("read_file", json!({"path": "blob.bin"})).await,
        Err("'blob.bin' appears to be a binary file; read_file only reads text files".into())
    );
    assert_eq!(fx.last_audit(), json!("File appears to be binary"));
    assert_eq!(
        fx.call("grep", json!({"pattern": "needle"})).await,
        Ok("text.txt:1:a needle\n[Skipped 1 binary file]".into())
    );
    assert_eq!(
        fx.call(
            "edit_file",
            json!({"path": "blob.bin", "old_string": "needle", "new_string": "pin"})
        )
        .await,
        Err("'blob.bin' appears to be a binary file; edit_file only edits text files".into())
    );
}

// ---------------------------------------------------------------------------------------------
// list_directory, glob, grep
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn list_directory_output() {
    let fx = Fixture::new();
    fx.write("b.txt", "hello");
    fx.write("a.md", "");
    fx.write("src/main.rs", "fn main() {}\n");
    fx.write(".hidden", "h");
    assert_eq!(
        fx.call("list_directory", json!({})).await,
        Ok(
            "[file] .hidden (1 bytes)\n[file] a.md (0 bytes)\n[file] b.txt (5 bytes)\n[dir]  src/"
                .into()
        )
    );
    assert_eq!(
        fx.call("list_directory", json!({"path": "src"})).await,
        Ok("[file] main.rs (13 bytes)".into())
    );
    fs::create_dir(fx.work.join("empty")).unwrap();
    assert_eq!(
        fx.call("list_directory", json!({"path": "empty"})).await,
        Ok("[empty directory]".into())
    );
    assert_eq!(
        fx.call("list_directory", json!({"path": "b.txt"})).await,
        Err("'b.txt' is not a directory".into())
    );
    // Capped.
    let fx = Fixture::with_limits(small_limits());
    for name in ["e", "d", "c", "b", "a"] {
        fx.write(name, "");
    }
    assert_eq!(
        fx.call("list_directory", json!({"path": "."})).await,
        Ok("[file] a (0 bytes)\n[file] b (0 bytes)\n[file] c (0 bytes)\n[2 more entries not shown]"
            .into())
    );
}

#[tokio::test]
async fn glob_matches_sorted_and_capped() {
    let fx = Fixture::new();
    fx.write("Cargo.toml", "");
    fx.write("src/lib.rs", "");
    fx.write("src/main.rs", "");
    fx.write("src/nested/deep.rs", "");
    fx.write("README.md", "");
    fx.write(".git/config.rs", "");
    assert_eq!(
        fx.call("glob", json!({"pattern": "**/*.rs"})).await,
        Ok("src/lib.rs\nsrc/main.rs\nsrc/nested/deep.rs".into())
    );
    assert_eq!(
        fx.call("glob", json!({"pattern": "*.rs", "path": "src"}))
            .await,
        Ok("src/lib.rs\nsrc/main.rs".into())
    );
    assert_eq!(
        fx.call("glob", json!({"pattern": "*.{md,toml}"})).await,
        Ok("Cargo.toml\nREADME.md".into())
    );
    assert_eq!(
        fx.call("glob", json!({"pattern": "/etc/*"})).await,
        Err("glob patterns are matched against paths relative to the search directory; give a relative pattern and choose the directory with 'path'".into())
    );
    assert_eq!(
        fx.call("glob", json!({"pattern": "[a"})).await,
        Err("Invalid glob pattern '[a': unclosed character class; missing ']'".into())
    );

    let fx = Fixture::with_limits(small_limits());
    for i in 0..5 {
        fx.write(&format!("f{i}.txt"), "");
    }
    assert_eq!(
        fx.call("glob", json!({"pattern": "*.txt"})).await,
        Ok("f0.txt\nf1.txt\nf2.txt\n[2 more matches not shown; narrow the pattern or path]".into())
    );
    // The walk itself is bounded too.
    let fx = Fixture::with_limits(ToolLimits {
        max_files_scanned: 3,
        ..ToolLimits::default()
    });
    for i in 0..5 {
        fx.write(&format!("f{i}.txt"), "needle");
    }
    assert_eq!(
        fx.call("glob", json!({"pattern": "*.txt"})).await,
        Ok("f0.txt\nf1.txt\nf2.txt\n\
            [Search stopped after visiting 3 entries; results are incomplete. Narrow the path or pattern.]"
            .into())
    );
    assert_eq!(
        fx.call("grep", json!({"pattern": "needle"})).await,
        Ok("f0.txt:1:needle\nf1.txt:1:needle\nf2.txt:1:needle\n\
            [Search stopped after visiting 3 entries; results are incomplete. Narrow the path or pattern.]"
            .into())
    );
}

#[tokio::test]
async fn grep_output_filters_and_caps() {
    let fx = Fixture::new();
    fx.write("a.rs", "fn main() {\n    let Needle = 1;\n}\n");
    fx.write("b.py", "needle = 2\n");
    fx.write("sub/c.rs", "// needle\n");
    assert_eq!(
        fx.call("grep", json!({"pattern": "needle"})).await,
        Ok("b.py:1:needle = 2\nsub/c.rs:1:// needle".into())
    );
    assert_eq!(
        fx.call(
            "grep",
            json!({"pattern": "needle", "case_insensitive": true})
        )
        .await,
        Ok("a.rs:2:    let Needle = 1;\nb.py:1:needle = 2\nsub/c.rs:1:// needle".into())
    );
    assert_eq!(
        fx.call("grep", json!({"pattern": "(?i)needle", "glob": "*.rs"}))
            .await,
        Ok("a.rs:2:    let Needle = 1;\nsub/c.rs:1:// needle".into())
    );
    assert_eq!(
        fx.call("grep", json!({"pattern": "needle", "glob": "sub/*.rs"}))
            .await,
        Ok("sub/c.rs:1:// needle".into())
    );
    assert_eq!(
        fx.call("grep", json!({"pattern": "needle", "path": "b.py"}))
            .await,
        Ok("b.py:1:needle = 2".into())
    );
    assert_eq!(
        fx.call("grep", json!({"pattern": "haystack", "path": "sub"}))
            .await,
        Ok("No matches for 'haystack'".into())
    );
    assert_eq!(
        fx.call("grep", json!({"pattern": "("})).await,
        Err(
            "Invalid regular expression: regex parse error:\n    (\n    ^\nerror: unclosed group"
                .into()
        )
    );
    assert_eq!(fx.last_audit(), json!("Invalid regular expression"));

    let fx = Fixture::with_limits(small_limits());
    fx.write(
        "m.txt",
        "hit 1\nmiss\nhit 2\nhit 3 is a very long line indeed\n",
    );
    fx.write("big.txt", format!("hit\n{}", "z".repeat(200)));
    assert_eq!(
        fx.call("grep", json!({"pattern": "hit"})).await,
        Ok("m.txt:1:hit 1\nm.txt:3:hit 2\n\
            [Stopped after 2 matches; narrow the pattern, path or glob to see the rest.]\n\
            [Skipped 1 file larger than 128 bytes]"
            .into())
    );
    assert_eq!(
        fx.call("grep", json!({"pattern": "long"})).await,
        Ok("m.txt:4:hit 3 is a very long … [line truncated]\n[Skipped 1 file larger than 128 bytes]"
            .into())
    );
}

// ---------------------------------------------------------------------------------------------
// write_file, edit_file
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn write_file_creates_replaces_and_caps() {
    let fx = Fixture::with_limits(small_limits());
    assert_eq!(
        fx.call(
            "write_file",
            json!({"path": "new/dir/a.txt", "content": "hello\n"})
        )
        .await,
        Ok("Created new/dir/a.txt (6 bytes)".into())
    );
    assert_eq!(fx.read("new/dir/a.txt"), "hello\n");
    fs::set_permissions(
        fx.work.join("new/dir/a.txt"),
        fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    assert_eq!(
        fx.call(
            "write_file",
            json!({"path": "new/dir/a.txt", "content": "bye"})
        )
        .await,
        Ok("Updated new/dir/a.txt (3 bytes)".into())
    );
    assert_eq!(fx.read("new/dir/a.txt"), "bye");
    let mode = fs::metadata(fx.work.join("new/dir/a.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    // No temporary file is left behind.
    let names: Vec<_> = fs::read_dir(fx.work.join("new/dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["a.txt"]);

    assert_eq!(
        fx.call(
            "write_file",
            json!({"path": "big.txt", "content": "x".repeat(65)})
        )
        .await,
        Err("content is 65 bytes, over the write_file limit of 64 bytes".into())
    );
    assert!(!fx.work.join("big.txt").exists());
    assert_eq!(
        fx.call("write_file", json!({"path": "new", "content": ""}))
            .await,
        Err("'new' is a directory".into())
    );
    assert_eq!(
        fx.call("write_file", json!({"path": ".", "content": ""}))
            .await,
        Err("'.' is a directory".into())
    );
    fs::set_permissions(
        fx.work.join("new/dir/a.txt"),
        fs::Permissions::from_mode(0o444),
    )
    .unwrap();
    assert_eq!(
        fx.call(
            "write_file",
            json!({"path": "new/dir/a.txt", "content": "x"})
        )
        .await,
        Err("'new/dir/a.txt' is read-only".into())
    );
}

#[tokio::test]
async fn write_file_with_default_cap() {
    let fx = Fixture::new();
    let content = "x".repeat(1024 * 1024 + 1);
    assert_eq!(
        fx.call("write_file", json!({"path": "big.txt", "content": content}))
            .await,
        Err("content is 1048577 bytes, over the write_file limit of 1048576 bytes".into())
    );
    assert!(!fx.work.join("big.txt").exists());
}

#[tokio::test]
async fn edit_file_requires_an_exact_unique_match() {
    let fx = Fixture::new();
    fx.write("a.txt", "foo bar foo\nbaz\n");
    let edit = |old: &str, new: &str, all: Option<bool>| {
        let mut input = json!({"path": "a.txt", "old_string": old, "new_string": new});
        if let Some(all) = all {
            input["replace_all"] = json!(all);
        }
        input
    };
    assert_eq!(
        fx.call("edit_file", edit("foo", "qux", None)).await,
        Err("old_string occurs 2 times in 'a.txt'; include more surrounding context to make it unique, or set replace_all to true".into())
    );
    assert_eq!(
        fx.last_audit(),
        json!("old_string is not unique in the file")
    );
    assert_eq!(
        fx.call("edit_file", edit("nope", "qux", None)).await,
        Err("old_string was not found in 'a.txt'; it must match the file exactly, including whitespace and indentation".into())
    );
    assert_eq!(
        fx.last_audit(),
        json!("old_string was not found in the file")
    );
    assert_eq!(
        fx.call("edit_file", edit("", "qux", None)).await,
        Err("old_string must not be empty; use write_file to create or overwrite a file".into())
    );
    assert_eq!(
        fx.call("edit_file", edit("baz", "baz", None)).await,
        Err("old_string and new_string are identical; nothing to change".into())
    );
    assert_eq!(fx.read("a.txt"), "foo bar foo\nbaz\n");

    assert_eq!(
        fx.call("edit_file", edit("bar foo", "bar qux", None)).await,
        Ok("Edited a.txt: replaced 1 occurrence".into())
    );
    assert_eq!(fx.read("a.txt"), "foo bar qux\nbaz\n");
    assert_eq!(
        fx.call("edit_file", edit("ba", "BA", Some(true))).await,
        Ok("Edited a.txt: replaced 2 occurrences".into())
    );
    assert_eq!(fx.read("a.txt"), "foo BAr qux\nBAz\n");
    assert_eq!(
        fx.call(
            "edit_file",
            json!({"path": "missing.txt", "old_string": "a", "new_string": "b"})
        )
        .await,
        Err("No such file or directory: 'missing.txt'".into())
    );
}

#[tokio::test]
async fn edit_file_size_caps() {
    let fx = Fixture::with_limits(small_limits());
    fx.write("big.txt", "x".repeat(65));
    assert_eq!(
        fx.call(
            "edit_file",
            json!({"path": "big.txt", "old_string": "x", "new_string": "y", "replace_all": true})
        )
        .await,
        Err("'big.txt' is 65 bytes, over the edit_file limit of 64 bytes".into())
    );
    fx.write("grow.txt", "a".repeat(60));
    assert_eq!(
        fx.call(
            "edit_file",
            json!({"path": "grow.txt", "old_string": "a", "new_string": "bb", "replace_all": true})
        )
        .await,
        Err("the edited file would be 120 bytes, over the edit_file limit of 64 bytes".into())
    );
    assert_eq!(fx.read("grow.txt"), "a".repeat(60));
    fx.write("latin1.txt", b"caf\xe9\n");
    assert_eq!(
        fx.call(
            "edit_file",
            json!({"path": "latin1.txt", "old_string": "caf", "new_string": "tea"})
        )
        .await,
        Err("'latin1.txt' is not valid UTF-8 text; edit_file only edits UTF-8 text files".into())
    );
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn events_record_keys_never_values() {
    let fx = Fixture::new();
    fx.write("a.txt", "secret-content\n");
    fx.call(
        "edit_file",
        json!({"path": "a.txt", "old_string": "secret-content", "new_string": "new-value"}),
    )
    .await
    .unwrap();
    fx.call("read_file", json!({"path": "../outside/secret.txt"}))
        .await
        .unwrap_err();
    fx.verify_call("write_file", json!({"path": "x", "content": "y"}))
        .await
        .unwrap_err();

    let events = fx.events();
    let rendered: Vec<(String, &str, i64, Value)> = events
        .iter()
        .map(|(session, e)| {
            (
                session.clone(),
                e.event_type.as_str(),
                e.turn_index,
                e.payload.clone(),
            )
        })
        .collect();
    let s = || "sess-1".to_owned();
    assert_eq!(
        rendered,
        vec![
            (
                s(),
                "workspace_tool_invocation",
                3,
                json!({"tool": "edit_file", "input_keys": ["new_string", "old_string", "path"]})
            ),
            (
                s(),
                "workspace_tool_result",
                3,
                json!({"tool": "edit_file", "success": true, "error_message": null})
            ),
            (
                s(),
                "workspace_tool_invocation",
                3,
                json!({"tool": "read_file", "input_keys": ["path"]})
            ),
            (
                s(),
                "workspace_tool_result",
                3,
                json!({"tool": "read_file", "success": false,
                       "error_message": "Access denied: path is outside the session's working directory"})
            ),
            (
                s(),
                "workspace_tool_invocation",
                3,
                json!({"tool": "write_file", "input_keys": ["content", "path"]})
            ),
            (
                s(),
                "workspace_tool_result",
                3,
                json!({"tool": "write_file", "success": false,
                       "error_message": "Tool 'write_file' is not available to the read-only profile 'verification'"})
            ),
        ]
    );
    let all = serde_json::to_string(&rendered.iter().map(|r| &r.3).collect::<Vec<_>>()).unwrap();
    for value in ["secret-content", "new-value", "a.txt", "../outside"] {
        assert!(!all.contains(value), "{value} leaked into {all}");
    }
}

#[tokio::test]
async fn a_failing_store_does_not_fail_the_tool() {
    let fx = Fixture::build(ToolLimits::default(), |work| vec![work.to_path_buf()], true);
    fx.write("a.txt", "still works\n");
    assert_eq!(
        fx.call("read_file", json!({"path": "a.txt"})).await,
        Ok("still works\n".into())
    );
    assert!(fx.events().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Races: a symlink swapped in between the check and the use (issue #12 item 7)
// ---------------------------------------------------------------------------------------------

/// A fixture whose tools, the first time they are about to use `trigger` (relative to the
/// working directory), replace `swap` (relative) with a symlink to `to(outside)`: a process
/// racing the tool, made deterministic.
fn racing(trigger: &str, swap: &str, to: impl Fn(&Path) -> PathBuf) -> Fixture {
    let mut fx = Fixture::new();
    let trigger = fx.work.join(trigger);
    let swap = fx.work.join(swap);
    let to = to(&fx.outside);
    let fired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hook: agent_tools::RaceHook = Arc::new(move |path: &Path| {
        if path == trigger && !fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let mut aside = swap.clone().into_os_string();
            aside.push(".moved-aside");
            fs::rename(&swap, &aside).unwrap();
            symlink(&to, &swap).unwrap();
        }
    });
    fx.tools = WorkspaceTools::new(
        fx.store.clone(),
        vec![fx.work.clone()],
        ToolLimits::default(),
    )
    .with_race_hook(hook);
    fx
}

fn assert_denied(result: &Result<String, String>, what: &str) {
    match result {
        Ok(text) => panic!("{what}: expected a refusal, got Ok({text:?})"),
        Err(text) => {
            assert!(!text.contains("top secret"), "{what}: {text}");
            assert!(text.starts_with("Access denied"), "{what}: {text}");
        }
    }
}

fn outside_dir(outside: &Path) -> PathBuf {
    outside.to_path_buf()
}

fn outside_secret(outside: &Path) -> PathBuf {
    outside.join("secret.txt")
}

#[tokio::test]
async fn read_refuses_a_directory_swapped_for_an_outside_link_after_the_check() {
    let fx = racing("inner/secret.txt", "inner", outside_dir);
    fx.write("inner/secret.txt", "harmless\n");
    let result = fx
        .call("read_file", json!({"path": "inner/secret.txt"}))
        .await;
    assert_denied(&result, "read_file");
}

#[tokio::test]
async fn read_refuses_a_file_swapped_for_an_outside_link_after_the_check() {
    let fx = racing("a.txt", "a.txt", outside_secret);
    fx.write("a.txt", "harmless\n");
    let result = fx.call("read_file", json!({"path": "a.txt"})).await;
    assert_denied(&result, "read_file");
}

#[tokio::test]
async fn list_refuses_a_directory_swapped_for_an_outside_link_after_the_check() {
    let fx = racing("inner", "inner", outside_dir);
    fx.write("inner/x.txt", "x\n");
    let result = fx.call("list_directory", json!({"path": "inner"})).await;
    assert_denied(&result, "list_directory");
}

#[tokio::test]
async fn walks_never_enter_a_directory_swapped_for_an_outside_link() {
    for tool in ["grep", "glob"] {
        let fx = racing("inner", "inner", outside_dir);
        fx.write("inner/x.txt", "nothing\n");
        let input = if tool == "grep" {
            json!({"pattern": "secret|nothing"})
        } else {
            json!({"pattern": "**/*"})
        };
        let out = fx.call(tool, input).await.unwrap();
        assert!(!out.contains("top secret"), "{tool}: {out}");
        assert!(!out.contains("secret.txt"), "{tool}: {out}");
    }
}

#[tokio::test]
async fn grep_never_reads_a_file_swapped_for_an_outside_link() {
    let fx = racing("a.txt", "a.txt", outside_secret);
    fx.write("a.txt", "harmless\n");
    let out = fx.call("grep", json!({"pattern": "."})).await.unwrap();
    assert!(!out.contains("top secret"), "{out}");
    // Named directly, the same swap is refused.
    let fx = racing("a.txt", "a.txt", outside_secret);
    fx.write("a.txt", "harmless\n");
    let result = fx
        .call("grep", json!({"pattern": ".", "path": "a.txt"}))
        .await;
    assert_denied(&result, "grep");
}

#[tokio::test]
async fn writes_never_create_files_outside_when_a_directory_is_swapped() {
    // An existing parent swapped after the check.
    let fx = racing("inner/new.txt", "inner", outside_dir);
    fx.write("inner/keep.txt", "k\n");
    let result = fx
        .call(
            "write_file",
            json!({"path": "inner/new.txt", "content": "pwned"}),
        )
        .await;
    assert_denied(&result, "write_file");
    assert!(!fx.outside.join("new.txt").exists());
    // Missing parents created under a directory swapped after the check.
    let fx = racing("inner/deep/new.txt", "inner", outside_dir);
    fx.write("inner/keep.txt", "k\n");
    let result = fx
        .call(
            "write_file",
            json!({"path": "inner/deep/new.txt", "content": "pwned"}),
        )
        .await;
    assert_denied(&result, "write_file");
    assert!(!fx.outside.join("deep").exists());
    let listing: Vec<_> = fs::read_dir(&fx.outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(listing, ["secret.txt"], "nothing created outside");
}

#[tokio::test]
async fn edit_never_reads_or_writes_through_a_file_swapped_for_an_outside_link() {
    let fx = racing("a.txt", "a.txt", outside_secret);
    fx.write("a.txt", "top harmless\n");
    let result = fx
        .call(
            "edit_file",
            json!({"path": "a.txt", "old_string": "top", "new_string": "no"}),
        )
        .await;
    assert_denied(&result, "edit_file");
    assert_eq!(
        fs::read_to_string(fx.outside.join("secret.txt")).unwrap(),
        "top secret\n"
    );
    assert!(
        fs::symlink_metadata(fx.work.join("a.txt"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the swapped-in link is left as it is, not replaced by a copy of its target"
    );
}
