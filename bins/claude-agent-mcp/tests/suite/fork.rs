//! agent_fork_session (issue 16 item 3, `docs/reference/tools.md#17-agent_fork_session`): a new
//! session whose history is the parent's up to a turn, the parent left as it was but for one
//! event; at the latest turn and at turn 1, of a running session, across a restart, on the
//! Messages API stand-in and on the Claude Code backend (fake CLI), and bad input.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use super::claude_code::Cli;
use super::tools::tool_use;
use crate::support::*;

/// Every byte the store holds for a session, read with SQLite's own text forms: its row, its
/// events, kept outputs, kept result and artifacts.
async fn stored(env: &TestEnv, session_id: &str) -> Vec<String> {
    let db = env.db().await;
    let mut state = Vec::new();
    for sql in [
        "SELECT json_array(session_id, workflow, profile, provider, provider_session_id, status, \
           working_directory, created_at, updated_at, last_activity_at, request_count, turn_count, \
           artifact_count, summary_latest, locked_by, lock_expires_at, lock_generation, \
           cancel_requested_at, cancel_reason, parent_session_id, forked_at_turn) \
         FROM sessions WHERE session_id = ?1",
        "SELECT json_array(event_id, event_type, turn_index, payload, created_at) \
         FROM session_events WHERE session_id = ?1 ORDER BY event_id",
        "SELECT json_array(turn_index, output_text, created_at) FROM session_outputs \
         WHERE session_id = ?1 ORDER BY turn_index",
        "SELECT json_array(execution, envelope, kept_at) FROM session_results WHERE session_id = ?1",
        "SELECT json_array(artifact_id, path, size_bytes, sha256, created_at) FROM artifacts \
         WHERE session_id = ?1 ORDER BY artifact_id",
    ] {
        let rows: Vec<String> = sqlx::query_scalar(sql)
            .bind(session_id)
            .fetch_all(&db)
            .await
            .unwrap();
        state.extend(rows);
    }
    db.close().await;
    state
}

/// The parent's events, as `stored` shows them, without the `session_fork_created` ones.
fn without_fork_events(state: &[String]) -> Vec<String> {
    state
        .iter()
        .filter(|row| !row.contains("\"session_fork_created\""))
        .cloned()
        .collect()
}

fn messages(pairs: &[(&str, &str)]) -> Value {
    Value::Array(
        pairs
            .iter()
            .map(|(role, content)| json!({"role": role, "content": content}))
            .collect(),
    )
}

/// A parent with two turns: "task one" → "answer one", "two" → "answer two".
async fn two_turn_parent(env: &TestEnv, server: &Server) -> String {
    env.reply_text("answer one").await;
    let run = server
        .call("agent_run_task", json!({"task": "task one"}))
        .await;
    assert_eq!(run["ok"], json!(true), "{run}");
    let parent = run["session_id"].as_str().unwrap().to_owned();
    env.reply_text("answer two").await;
    let next = server
        .call(
            "agent_continue_session",
            json!({"session_id": parent, "message": "two"}),
        )
        .await;
    assert_eq!(next["ok"], json!(true), "{next}");
    assert_eq!(
        env.requests().await[0]["messages"],
        messages(&[
            ("user", "task one"),
            ("assistant", "answer one"),
            ("user", "two")
        ])
    );
    parent
}

async fn get(server: &Server, session_id: &str) -> Value {
    server
        .call("agent_get_session", json!({"session_id": session_id}))
        .await
}

#[tokio::test]
async fn fork_at_the_latest_turn_and_at_turn_one_replays_exactly_the_parents_history() {
    let env = TestEnv::new().await;
    let server = env.start().await;
    let parent = two_turn_parent(&env, &server).await;

    // The latest turn (the default), no message: the fork only.
    let fork = server
        .call("agent_fork_session", json!({"session_id": parent}))
        .await;
    let child = fork["session_id"].as_str().unwrap().to_owned();
    assert!(is_session_id(&child) && child != parent, "{fork}");
    assert_eq!(
        fork,
        json!({"ok": true, "session_id": child, "status": "completed", "workflow": "fork_session",
               "profile": "general",
               "summary": format!("Session {child} forked from {parent} at turn 2"),
               "result": {"parent_session_id": parent, "forked_at_turn": 2},
               "artifacts": [], "warnings": [], "errors": []})
    );
    let view = get(&server, &child).await;
    assert_eq!(
        (
            &view["workflow"],
            &view["status"],
            &view["turn_count"],
            &view["request_count"],
            &view["artifact_count"],
            &view["summary_latest"],
            &view["parent_session_id"],
            &view["forked_at_turn"],
        ),
        (
            &json!("run_task"),
            &json!("completed"),
            &json!(2),
            &json!(0),
            &json!(0),
            &json!("answer two"),
            &json!(parent),
            &json!(2)
        )
    );
    assert_eq!(
        get(&server, &parent).await["parent_session_id"],
        Value::Null
    );
    // Its history is the parent's whole conversation.
    env.reply_text("branch B").await;
    let b = server
        .call(
            "agent_continue_session",
            json!({"session_id": child, "message": "B"}),
        )
        .await;
    assert_eq!(b["ok"], json!(true), "{b}");
    assert_eq!(
        env.requests().await[0]["messages"],
        messages(&[
            ("user", "task one"),
            ("assistant", "answer one"),
            ("user", "two"),
            ("assistant", "answer two"),
            ("user", "B")
        ])
    );

    // Turn 1, with a message: the continuation's envelope on the new session.
    env.reply_text("branch C").await;
    let c = server
        .call(
            "agent_fork_session",
            json!({"session_id": parent, "at_turn": 1, "message": "C"}),
        )
        .await;
    let second = c["session_id"].as_str().unwrap().to_owned();
    assert!(second != parent && second != child);
    assert_eq!(
        c,
        json!({"ok": true, "session_id": second, "status": "completed", "workflow": "fork_session",
               "profile": "general", "summary": "branch C",
               "result": {"output_text": "branch C", "usage": {"input_tokens": 11, "output_tokens": 7, "total_cost_usd": 0.000138}},
               "artifacts": [], "warnings": [], "errors": []})
    );
    assert_eq!(
        env.requests().await[0]["messages"],
        messages(&[
            ("user", "task one"),
            ("assistant", "answer one"),
            ("user", "C")
        ])
    );
    let view = get(&server, &second).await;
    assert_eq!(
        (
            &view["turn_count"],
            &view["request_count"],
            &view["parent_session_id"],
            &view["forked_at_turn"]
        ),
        (&json!(2), &json!(1), &json!(parent), &json!(1))
    );
    // Its log: the parent's through the end of turn 1, the fork's event, then its own.
    let parent_events = env.events(&parent).await;
    let second_events = env.events(&second).await;
    let end = parent_events
        .iter()
        .position(|(t, turn, _)| t == "provider_response_summary" && *turn == 1)
        .unwrap();
    assert_eq!(second_events[..=end], parent_events[..=end]);
    assert_eq!(
        second_events[end + 1..],
        [
            (
                "session_forked".to_owned(),
                1,
                json!({"parent_session_id": parent, "at_turn": 1})
            ),
            ("user_input".to_owned(), 1, json!({"message": "C"})),
            ("provider_request_start".to_owned(), 1, json!({})),
            (
                "provider_response_summary".to_owned(),
                2,
                json!({"summary": "branch C", "stop_reason": "end_turn"})
            ),
        ]
    );
    // The parent's log names both forks.
    let created: Vec<_> = parent_events
        .iter()
        .filter(|(t, _, _)| t == "session_fork_created")
        .cloned()
        .collect();
    assert_eq!(
        created,
        [
            (
                "session_fork_created".to_owned(),
                2,
                json!({"child_session_id": child, "at_turn": 2})
            ),
            (
                "session_fork_created".to_owned(),
                1,
                json!({"child_session_id": second, "at_turn": 1})
            ),
        ]
    );
    // The fork's result is collected like any session's.
    let waited = server
        .call("agent_wait_session", json!({"session_id": second}))
        .await;
    assert_eq!(waited, c);
    server.shutdown().await;
}

#[tokio::test]
async fn continuing_the_fork_leaves_the_parent_byte_for_byte_unchanged() {
    let env = TestEnv::new().await;
    let server = env.start().await;
    let parent = two_turn_parent(&env, &server).await;
    // A long output is kept as an artifact: the parent has one of everything.
    let long = "A long enough answer to be kept as an output artifact of the parent session.";
    env.reply_text(long).await;
    server
        .call(
            "agent_continue_session",
            json!({"session_id": parent, "message": "three"}),
        )
        .await;
    let before = stored(&env, &parent).await;
    let view_before = get(&server, &parent).await;
    assert_eq!(view_before["artifact_count"], json!(1));

    env.reply_text("fork answer").await;
    let fork = server
        .call(
            "agent_fork_session",
            json!({"session_id": parent, "at_turn": 2, "message": "x"}),
        )
        .await;
    let child = fork["session_id"].as_str().unwrap().to_owned();
    for message in ["y", "z"] {
        let v = server
            .call(
                "agent_continue_session",
                json!({"session_id": child, "message": message}),
            )
            .await;
        assert_eq!(v["ok"], json!(true), "{v}");
    }
    assert_eq!(get(&server, &child).await["turn_count"], json!(5));
    assert_eq!(get(&server, &child).await["artifact_count"], json!(0));

    let after = stored(&env, &parent).await;
    assert_eq!(after.len(), before.len() + 1, "one event more");
    assert_eq!(without_fork_events(&after), before);
    assert_eq!(get(&server, &parent).await, view_before);
    // The fork's own rows are its own: outputs of turns 1 and 2 copied, 3 to 5 written.
    let turns: Vec<i64> = sqlx::query_scalar(
        "SELECT turn_index FROM session_outputs WHERE session_id = ?1 ORDER BY turn_index",
    )
    .bind(&child)
    .fetch_all(&env.db().await)
    .await
    .unwrap();
    assert_eq!(turns, [1, 2, 3, 4, 5]);
    server.shutdown().await;
}

#[tokio::test]
async fn a_running_session_is_forked_at_its_last_completed_turn() {
    let env = TestEnv::new().await;
    env.reply_text("answer one").await;
    let server = env.start().await;
    let run = server
        .call("agent_run_task", json!({"task": "task one"}))
        .await;
    let parent = run["session_id"].as_str().unwrap().to_owned();
    env.reply(
        ResponseTemplate::new(200)
            .set_body_json(text_reply("slow answer"))
            .set_delay(Duration::from_secs(3)),
    )
    .await;
    let running = server
        .call(
            "agent_continue_session",
            json!({"session_id": parent, "message": "slow", "wait_seconds": 0}),
        )
        .await;
    assert_eq!(running["status"], json!("running"), "{running}");
    env.wait_for_request().await;
    let lock = (
        env.column(&parent, "locked_by").await,
        env.column(&parent, "lock_generation").await,
    );
    assert!(lock.0.is_some());

    let started = Instant::now();
    let fork = server
        .call("agent_fork_session", json!({"session_id": parent}))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the fork does not wait for the run"
    );
    assert_eq!(fork["ok"], json!(true), "{fork}");
    assert_eq!(fork["result"]["forked_at_turn"], json!(1));
    let child = fork["session_id"].as_str().unwrap().to_owned();
    // The run goes on, its lock untouched.
    assert_eq!(
        env.column(&parent, "status").await.as_deref(),
        Some("running")
    );
    assert_eq!(
        (
            env.column(&parent, "locked_by").await,
            env.column(&parent, "lock_generation").await
        ),
        lock
    );
    // The fork has none of the running continuation's events.
    let child_events = env.events(&child).await;
    assert!(
        !child_events
            .iter()
            .any(|(_, _, p)| p == &json!({"message": "slow"})),
        "{child_events:?}"
    );
    assert_eq!(
        child_events.last().unwrap().0,
        "session_forked",
        "{child_events:?}"
    );
    let done = server
        .call(
            "agent_wait_session",
            json!({"session_id": parent, "timeout_seconds": 30}),
        )
        .await;
    assert_eq!(done["ok"], json!(true), "{done}");
    assert_eq!(get(&server, &parent).await["turn_count"], json!(2));

    env.reply_text("fork answer").await;
    let v = server
        .call(
            "agent_continue_session",
            json!({"session_id": child, "message": "X"}),
        )
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(
        env.requests().await[0]["messages"],
        messages(&[
            ("user", "task one"),
            ("assistant", "answer one"),
            ("user", "X")
        ])
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_session_is_forked_after_a_restart() {
    let env = TestEnv::new().await;
    let server = env.start().await;
    let parent = two_turn_parent(&env, &server).await;
    let fork_before = server
        .call("agent_fork_session", json!({"session_id": parent}))
        .await;
    let early = fork_before["session_id"].as_str().unwrap().to_owned();
    assert_eq!(server.shutdown().await, 0);

    let server = env.start().await;
    env.reply_text("after the restart").await;
    let fork = server
        .call(
            "agent_fork_session",
            json!({"session_id": parent, "at_turn": 1, "message": "again"}),
        )
        .await;
    assert_eq!(fork["ok"], json!(true), "{fork}");
    assert_eq!(
        env.requests().await[0]["messages"],
        messages(&[
            ("user", "task one"),
            ("assistant", "answer one"),
            ("user", "again")
        ])
    );
    // A fork made before the restart continues from its copied history.
    env.reply_text("early fork").await;
    let v = server
        .call(
            "agent_continue_session",
            json!({"session_id": early, "message": "later"}),
        )
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(
        env.requests().await[0]["messages"],
        messages(&[
            ("user", "task one"),
            ("assistant", "answer one"),
            ("user", "two"),
            ("assistant", "answer two"),
            ("user", "later")
        ])
    );
    let view = get(&server, &early).await;
    assert_eq!(
        (&view["parent_session_id"], &view["forked_at_turn"]),
        (&json!(parent), &json!(2))
    );
    server.shutdown().await;
}

/// Bad input answers before anything is created: the schema layer for the wrong types, the
/// handler layer (`validation_error`) for the bounds, the engine for a turn the parent does not
/// have or that does not end an exchange.
#[tokio::test]
async fn bad_input_is_refused_and_creates_nothing() {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_BUILTIN_TOOLS", "true");
    std::fs::write(env.cwd().join("notes.txt"), "notes").unwrap();
    let server = env.start().await;
    // A two-call tool loop: one execution of two turns (turn 1 ends inside it).
    env.reply_tool_use_then(
        tool_use("toolu_1", "read_file", json!({"path": "notes.txt"})),
        "looped",
    )
    .await;
    let run = server.call("agent_run_task", json!({"task": "t"})).await;
    let parent = run["session_id"].as_str().unwrap().to_owned();
    let turns = get(&server, &parent).await["turn_count"].clone();
    let sessions = env.session_count().await;

    for (args, message) in [
        (json!({}), "'session_id' is a required property"),
        (
            json!({"session_id": parent, "at_turn": 0}),
            "0 is less than the minimum of 1",
        ),
        (
            json!({"session_id": parent, "at_turn": "1"}),
            "'1' is not of type 'integer'",
        ),
        (
            json!({"session_id": parent, "at_turn": 1.5}),
            "1.5 is not of type 'integer'",
        ),
        (
            json!({"session_id": parent, "message": 5}),
            "5 is not of type 'string'",
        ),
    ] {
        let result = server.call_raw("agent_fork_session", args).await;
        assert_eq!(result.is_error, Some(true), "{message}");
        assert_eq!(
            only_text(&result),
            format!("Input validation error: {message}")
        );
    }

    let invalid = |session_id: &str, problem: &str| {
        json!({"ok": false, "session_id": session_id, "status": "failed", "workflow": "fork_session",
               "profile": "general", "summary": format!("Invalid agent_fork_session request: {problem}"),
               "result": {}, "artifacts": [], "warnings": [],
               "errors": [{"code": "validation_error", "message": format!("Invalid agent_fork_session request: {problem}")}]})
    };
    let long_id = format!("sess_{}", "a".repeat(200));
    let huge = "x".repeat(512 * 1024 + 1);
    let cases = [
        (
            json!({"session_id": long_id}),
            invalid("", "session_id: at most 128 bytes, got 205"),
        ),
        (
            json!({"session_id": parent, "message": huge}),
            invalid(
                &parent,
                "message: text is 524289 bytes, more than the limit of 524288 bytes",
            ),
        ),
        (
            json!({"session_id": parent, "message": ""}),
            invalid(&parent, "message: string should have at least 1 character"),
        ),
        (
            json!({"session_id": parent, "max_turns": 3}),
            invalid(&parent, "max_turns: accepted only with message"),
        ),
        (
            json!({"session_id": parent, "at_turn": 99}),
            invalid(
                &parent,
                &format!(
                    "at_turn: input should be less than or equal to {turns}, the turn_count of session {parent}, got 99"
                ),
            ),
        ),
        (
            json!({"session_id": parent, "at_turn": 1}),
            invalid(
                &parent,
                &format!(
                    "at_turn: turn 1 of session {parent} does not end an exchange; it can be forked at turn {turns}"
                ),
            ),
        ),
    ];
    for (args, expected) in cases {
        let v = server.call("agent_fork_session", args.clone()).await;
        assert_eq!(
            v,
            expected,
            "{}",
            &args.to_string()[..80.min(args.to_string().len())]
        );
    }
    assert_eq!(turns, json!(2), "the tool loop made two turns");
    let v = server
        .call("agent_fork_session", json!({"session_id": "sess_nope"}))
        .await;
    assert_eq!(
        v,
        json!({"ok": false, "session_id": "sess_nope", "status": "failed", "workflow": "fork_session",
               "profile": "general", "summary": "Session not found: sess_nope", "result": {},
               "artifacts": [], "warnings": [],
               "errors": [{"code": "session_not_found", "message": "Session not found: sess_nope", "details": null}]})
    );
    // A session whose only run failed has no turn to fork.
    env.reply(ResponseTemplate::new(500).set_body_string("boom"))
        .await;
    let failed = server.call("agent_run_task", json!({"task": "f"})).await;
    let failed = failed["session_id"].as_str().unwrap().to_owned();
    let v = server
        .call("agent_fork_session", json!({"session_id": failed}))
        .await;
    assert_eq!(
        v,
        invalid(
            &failed,
            &format!("session {failed} has no completed turn to fork (turn_count 0)")
        )
    );
    assert_eq!(
        env.session_count().await,
        sessions + 1,
        "only the failed run"
    );
    assert!(
        !env.event_types(&parent)
            .await
            .contains(&"session_fork_created".to_owned())
    );
    server.shutdown().await;
}

/// Native mode: the fork's first continuation resumes the parent's CLI session with
/// `--fork-session` (the fork then has its own CLI session); a fork at an earlier turn, or made
/// at the end of a parent that has moved on since, starts from the reconstructed context.
#[tokio::test]
async fn on_claude_code_a_forks_first_continuation_passes_fork_session() {
    let cli = Cli::new("native").await;
    let reply = |text: &str, cli_session: &str| {
        format!(
            r#"{{"type":"result","subtype":"success","is_error":false,"result":"{text}","session_id":"{cli_session}","num_turns":1,"stop_reason":"end_turn"}}"#
        )
    };
    cli.script("stdout", &reply("one", "cli-parent"));
    let server = cli.env.start().await;
    let parent = server
        .call("agent_run_task", json!({"task": "the original task"}))
        .await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    cli.script("stdout", &reply("two", "cli-parent"));
    let v = server
        .call(
            "agent_continue_session",
            json!({"session_id": parent, "message": "second"}),
        )
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");

    // At the latest turn: --resume <parent's> --fork-session, only the message on stdin.
    cli.script("stdout", &reply("forked", "cli-fork"));
    let fork = server
        .call(
            "agent_fork_session",
            json!({"session_id": parent, "message": "branch"}),
        )
        .await;
    assert_eq!(fork["ok"], json!(true), "{fork}");
    let child = fork["session_id"].as_str().unwrap().to_owned();
    let argv = cli.argv(3);
    let resume = argv.iter().position(|a| a == "--resume").expect("--resume");
    assert_eq!(argv[resume + 1], "cli-parent");
    assert!(argv.contains(&"--fork-session".to_owned()), "{argv:?}");
    assert_eq!(
        std::fs::read_to_string(cli.dir.join("stdin.3"))
            .unwrap()
            .trim(),
        "branch"
    );
    assert_eq!(
        cli.env
            .column(&child, "provider_session_id")
            .await
            .as_deref(),
        Some("cli-fork")
    );
    assert_eq!(
        cli.env
            .column(&parent, "provider_session_id")
            .await
            .as_deref(),
        Some("cli-parent")
    );
    // Its next continuation resumes its own CLI session, not forking again.
    let v = server
        .call(
            "agent_continue_session",
            json!({"session_id": child, "message": "more"}),
        )
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    let argv = cli.argv(4);
    let resume = argv.iter().position(|a| a == "--resume").expect("--resume");
    assert_eq!(argv[resume + 1], "cli-fork");
    assert!(!argv.contains(&"--fork-session".to_owned()), "{argv:?}");

    // At turn 1: the CLI can fork only at the end, so no --resume: the reconstructed context.
    cli.script("stdout", &reply("early", "cli-early"));
    let early = server
        .call(
            "agent_fork_session",
            json!({"session_id": parent, "at_turn": 1, "message": "early branch"}),
        )
        .await;
    assert_eq!(early["ok"], json!(true), "{early}");
    let argv = cli.argv(5);
    assert!(
        !argv
            .iter()
            .any(|a| a == "--resume" || a == "--fork-session"),
        "{argv:?}"
    );
    let prompt = std::fs::read_to_string(cli.dir.join("stdin.5")).unwrap();
    assert!(prompt.contains("the original task"), "{prompt}");
    assert!(prompt.contains("early branch"), "{prompt}");
    assert!(
        !prompt.contains("second"),
        "turn 2 is not in the fork: {prompt}"
    );

    // A fork made at the end, then the parent moves on: the fork cannot resume it any more.
    let late = server
        .call("agent_fork_session", json!({"session_id": parent}))
        .await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    cli.script("stdout", &reply("three", "cli-parent"));
    server
        .call(
            "agent_continue_session",
            json!({"session_id": parent, "message": "third"}),
        )
        .await;
    cli.script("stdout", &reply("late", "cli-late"));
    let v = server
        .call(
            "agent_continue_session",
            json!({"session_id": late, "message": "late branch"}),
        )
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    let argv = cli.argv(7);
    assert!(
        !argv
            .iter()
            .any(|a| a == "--resume" || a == "--fork-session"),
        "{argv:?}"
    );
    let prompt = std::fs::read_to_string(cli.dir.join("stdin.7")).unwrap();
    assert!(
        prompt.contains("second") && !prompt.contains("third"),
        "{prompt}"
    );

    // A fork made at the end, then a continuation of the parent fails: it completed no turn,
    // but the CLI session may have taken the failed turn in, so the fork does not resume it.
    let stale = server
        .call("agent_fork_session", json!({"session_id": parent}))
        .await["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let turns_before = get(&server, &parent).await["turn_count"].clone();
    cli.script("stderr", "boom");
    cli.script("exit", "1");
    let failed = server
        .call(
            "agent_continue_session",
            json!({"session_id": parent, "message": "fourth"}),
        )
        .await;
    assert_eq!(failed["ok"], json!(false), "{failed}");
    assert_eq!(get(&server, &parent).await["turn_count"], turns_before);
    cli.script("stderr", "");
    cli.script("exit", "0");
    cli.script("stdout", &reply("stale", "cli-stale"));
    let v = server
        .call(
            "agent_continue_session",
            json!({"session_id": stale, "message": "stale branch"}),
        )
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    let last = cli.invocations();
    let argv = cli.argv(last);
    assert!(
        !argv
            .iter()
            .any(|a| a == "--resume" || a == "--fork-session"),
        "{argv:?}"
    );
    let prompt = std::fs::read_to_string(cli.dir.join(format!("stdin.{last}"))).unwrap();
    assert!(prompt.contains("stale branch"), "{prompt}");
    server.shutdown().await;
}

/// On the PostgreSQL store: a session run through one server is forked through another (a
/// fleet shares one store), the fork's continuation replays the history up to its turn, and
/// both servers read the fork's origin.
#[tokio::test]
async fn a_session_on_postgres_is_forked_through_another_server() {
    let Some(pg) = agent_testkit::postgres::fresh_schema().await else {
        return;
    };
    let mut a = TestEnv::new().await;
    a.set("CLAUDE_AGENT_MCP_DATABASE_URL", pg.url());
    let mut b = TestEnv::new().await;
    b.set("CLAUDE_AGENT_MCP_DATABASE_URL", pg.url());
    // The parent's working directory is A's: B must allow it to run the fork's continuation.
    b.set("CLAUDE_AGENT_MCP_ALLOWED_DIRS", &path_str(&a.cwd()));
    let node_a = a.start().await;
    let parent = two_turn_parent(&a, &node_a).await;
    let node_b = b.start().await;
    b.reply_text("on node B").await;
    let fork = node_b
        .call(
            "agent_fork_session",
            json!({"session_id": parent, "at_turn": 1, "message": "branch"}),
        )
        .await;
    assert_eq!(fork["ok"], json!(true), "{fork}");
    assert_eq!(fork["workflow"], json!("fork_session"));
    assert_eq!(
        b.requests().await[0]["messages"],
        messages(&[
            ("user", "task one"),
            ("assistant", "answer one"),
            ("user", "branch")
        ])
    );
    let child = fork["session_id"].as_str().unwrap();
    let view = get(&node_a, child).await;
    assert_eq!(
        (
            &view["parent_session_id"],
            &view["forked_at_turn"],
            &view["turn_count"]
        ),
        (&json!(parent), &json!(1), &json!(2))
    );
    let parent_view = get(&node_a, &parent).await;
    assert_eq!(
        (
            &parent_view["turn_count"],
            &parent_view["parent_session_id"]
        ),
        (&json!(2), &Value::Null)
    );
    node_a.shutdown().await;
    node_b.shutdown().await;
}
