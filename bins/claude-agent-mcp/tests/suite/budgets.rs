//! Budgets, models and cost (issue 16 item 2 and the per-call model of item 4,
//! `docs/reference/tools.md#18-budgets-and-models`) through the real binary: the tool loop
//! stops before a call that would pass the budget, operator caps win, cost is priced from
//! usage and summed per session, the model allowlist and effort, and the Claude Code CLI's
//! `--max-budget-usd`, `--model` and `--effort`.

use serde_json::{Value, json};

use super::claude_code::Cli;
use super::tools::tool_use;
use crate::support::*;

/// A model call that asks for a tool and used 1,000 input and 100 output tokens: at the
/// default model's prices (3 and 15 USD per million) it costs $0.0045.
fn costly_tool_use() -> Value {
    let mut reply = tool_use("toolu_1", "read_file", json!({"path": "notes.txt"}));
    reply["usage"] = json!({"input_tokens": 1000, "output_tokens": 100});
    reply
}

/// A server whose model always asks for another tool call.
async fn endless_tool_loop() -> TestEnv {
    let mut env = TestEnv::new().await;
    env.set("CLAUDE_AGENT_MCP_BUILTIN_TOOLS", "true");
    std::fs::write(env.cwd().join("notes.txt"), "notes").unwrap();
    env.reply(wiremock::ResponseTemplate::new(200).set_body_json(costly_tool_use()))
        .await;
    env
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-12)
}

fn warnings(v: &Value) -> Vec<String> {
    v["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_tool_loop_whose_third_call_would_pass_the_budget_stops_after_the_second() {
    let env = endless_tool_loop().await;
    let server = env.start().await;
    // Two calls cost $0.009; a third would make $0.0135, more than $0.012.
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "Keep reading.", "max_budget_usd": 0.012}),
        )
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(v["status"], json!("completed"), "{v}");
    assert_eq!(env.requests().await.len(), 2, "two model calls, not three");
    let usage = &v["result"]["usage"];
    assert_eq!(usage["input_tokens"], json!(2000), "{v}");
    assert_eq!(usage["output_tokens"], json!(200), "{v}");
    assert!(close(&usage["total_cost_usd"], 0.009), "{usage}");
    let budget: Vec<String> = warnings(&v)
        .into_iter()
        .filter(|w| w.starts_with("Budget reached"))
        .collect();
    assert_eq!(
        budget,
        [
            "Budget reached (max_budget_usd $0.012): stopped before the next model call; \
          spent $0.009000 and 2200 tokens; the output may be incomplete"
        ],
        "{v}"
    );
    assert!(
        !warnings(&v).iter().any(|w| w.contains("max_turns")),
        "not the max_turns warning: {v}"
    );
    // The session keeps what the execution spent.
    let id = v["session_id"].as_str().unwrap();
    let session = server
        .call("agent_get_session", json!({"session_id": id}))
        .await;
    assert_eq!(session["usage"]["input_tokens"], json!(2000), "{session}");
    assert!(
        close(&session["usage"]["total_cost_usd"], 0.009),
        "{session}"
    );

    // Without a budget the same loop runs to max_turns.
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "Keep reading.", "max_turns": 3}),
        )
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(env.requests().await.len(), 5, "3 more calls");
    assert!(warnings(&v).iter().any(|w| w.contains("max_turns")), "{v}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_token_budget_stops_the_loop_the_same_way() {
    let env = endless_tool_loop().await;
    let server = env.start().await;
    // A call uses 1,100 tokens; the next is estimated at 1,200: 2,300 then 3,400 > 3,000.
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "Keep reading.", "max_total_tokens": 3000}),
        )
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(env.requests().await.len(), 2);
    assert!(
        warnings(&v).iter().any(|w| w.starts_with(
            "Budget reached (max_total_tokens 3000): stopped before the next model call; spent $0.009000 and 2200 tokens"
        )),
        "{v}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_operator_cap_wins_over_a_higher_request_and_applies_without_one() {
    let mut env = endless_tool_loop().await;
    env.set(
        "CLAUDE_AGENT_MCP_MAX_BUDGET_USD",
        "general=0.012,verification=1",
    );
    let server = env.start().await;
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "Keep reading.", "max_budget_usd": 5}),
        )
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(env.requests().await.len(), 2, "the cap, not the request");
    let w = warnings(&v);
    assert!(
        w.contains(
            &"max_budget_usd lowered to the operator's cap of $0.012 for profile 'general'"
                .to_owned()
        ),
        "{v}"
    );
    assert!(
        w.iter()
            .any(|w| w.starts_with("Budget reached (max_budget_usd $0.012)")),
        "{v}"
    );
    // No budget asked: the cap still holds, with no "lowered" warning.
    let v = server
        .call("agent_run_task", json!({"task": "Keep reading."}))
        .await;
    assert_eq!(env.requests().await.len(), 4);
    assert!(!warnings(&v).iter().any(|w| w.contains("lowered")), "{v}");
    assert!(
        warnings(&v).iter().any(|w| w.starts_with("Budget reached")),
        "{v}"
    );
    // A lower request than the cap is the request's.
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "Keep reading.", "max_budget_usd": 0.005}),
        )
        .await;
    assert_eq!(env.requests().await.len(), 5, "stopped after one call");
    assert!(
        warnings(&v)
            .iter()
            .any(|w| w.starts_with("Budget reached (max_budget_usd $0.005)")),
        "{v}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn cost_is_priced_from_usage_and_summed_per_session() {
    let mut env = TestEnv::new().await;
    // The operator's price for the default model replaces the built-in one.
    env.set(
        "CLAUDE_AGENT_MCP_MODEL_PRICES",
        "claude-sonnet-4-6=2/10/4/0.5",
    );
    let mut reply = text_reply("done");
    reply["usage"] = json!({
        "input_tokens": 1000, "output_tokens": 500,
        "cache_creation_input_tokens": 2000, "cache_read_input_tokens": 10000
    });
    env.reply(wiremock::ResponseTemplate::new(200).set_body_json(reply))
        .await;
    let server = env.start().await;
    let v = server
        .call("agent_run_task", json!({"task": "Do it."}))
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    // 1000×2 + 500×10 + 2000×4 + 10000×0.5 per million = $0.02.
    let one = 0.002 + 0.005 + 0.008 + 0.005;
    let usage = &v["result"]["usage"];
    assert!(close(&usage["total_cost_usd"], one), "{usage}");
    let id = v["session_id"].as_str().unwrap();
    let next = server
        .call(
            "agent_continue_session",
            json!({"session_id": id, "message": "Again."}),
        )
        .await;
    assert_eq!(next["ok"], json!(true), "{next}");
    let session = server
        .call("agent_get_session", json!({"session_id": id}))
        .await;
    let total = &session["usage"];
    assert_eq!(total["input_tokens"], json!(2000), "{session}");
    assert_eq!(total["output_tokens"], json!(1000), "{session}");
    assert_eq!(
        total["cache_creation_input_tokens"],
        json!(4000),
        "{session}"
    );
    assert_eq!(total["cache_read_input_tokens"], json!(20000), "{session}");
    assert!(close(&total["total_cost_usd"], 2.0 * one), "{session}");
    // The same totals are in the database.
    assert_eq!(
        env.column(id, "usage_input_tokens").await.as_deref(),
        Some("2000")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_model_and_effort_are_chosen_within_the_operator_allowlist() {
    let mut env = TestEnv::new().await;
    env.set(
        "CLAUDE_AGENT_MCP_ALLOWED_MODELS",
        "claude-opus-4-6, claude-haiku-4-5, local-model",
    );
    env.reply_text("ok").await;
    let server = env.start().await;
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "Think hard.", "model": "claude-opus-4-6", "effort": "high"}),
        )
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    let body = &env.requests().await[0];
    assert_eq!(body["model"], json!("claude-opus-4-6"));
    assert_eq!(body["output_config"], json!({"effort": "high"}));
    // Priced at the chosen model's prices (5 and 25 per million): 11×5 + 7×25.
    assert!(
        close(&v["result"]["usage"]["total_cost_usd"], 0.000055 + 0.000175),
        "{v}"
    );
    // A continuation without a model uses the configured one.
    let id = v["session_id"].as_str().unwrap();
    server
        .call(
            "agent_continue_session",
            json!({"session_id": id, "message": "Go on."}),
        )
        .await;
    let body = &env.requests().await[1];
    assert_eq!(body["model"], json!("claude-sonnet-4-6"));
    assert!(body.get("output_config").is_none(), "{body}");

    let before = env.session_count().await;
    let sent = env.requests().await.len();
    let denied = server
        .call(
            "agent_run_task",
            json!({"task": "x", "model": "claude-opus-4-1"}),
        )
        .await;
    assert_eq!(denied["ok"], json!(false));
    assert_eq!(
        denied["errors"][0]["code"],
        json!("policy_denied"),
        "{denied}"
    );
    assert_eq!(
        denied["errors"][0]["message"],
        json!(
            "model 'claude-opus-4-1' is not allowed by the operator; allowed models: ['claude-sonnet-4-6', 'claude-opus-4-6', 'claude-haiku-4-5', 'local-model']"
        )
    );
    let no_effort = server
        .call(
            "agent_run_task",
            json!({"task": "x", "model": "claude-haiku-4-5", "effort": "low"}),
        )
        .await;
    assert_eq!(
        no_effort["errors"][0]["message"],
        json!("effort 'low' is not supported by model 'claude-haiku-4-5'"),
        "{no_effort}"
    );
    let unpriced = server
        .call(
            "agent_run_task",
            json!({"task": "x", "model": "local-model", "max_budget_usd": 1}),
        )
        .await;
    assert_eq!(unpriced["errors"][0]["code"], json!("validation_error"));
    assert!(
        unpriced["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with(
                "max_budget_usd cannot be enforced: no price is known for model 'local-model'"
            ),
        "{unpriced}"
    );
    // A refused continuation leaves the session as it was.
    let refused = server
        .call(
            "agent_continue_session",
            json!({"session_id": id, "message": "x", "model": "gpt-4"}),
        )
        .await;
    assert_eq!(
        refused["errors"][0]["code"],
        json!("policy_denied"),
        "{refused}"
    );
    // A fork whose continuation asks for a refused model is refused before the fork exists.
    let fork = server
        .call(
            "agent_fork_session",
            json!({"session_id": id, "message": "x", "model": "gpt-4"}),
        )
        .await;
    assert_eq!(fork["errors"][0]["code"], json!("policy_denied"), "{fork}");
    assert_eq!(env.session_count().await, before, "no fork was created");
    // One that is allowed runs on the chosen model.
    let fork = server
        .call(
            "agent_fork_session",
            json!({"session_id": id, "message": "Branch.", "model": "claude-opus-4-6", "effort": "low"}),
        )
        .await;
    assert_eq!(fork["ok"], json!(true), "{fork}");
    let body = env.requests().await.last().unwrap().clone();
    assert_eq!(body["model"], json!("claude-opus-4-6"));
    assert_eq!(body["output_config"], json!({"effort": "low"}));
    let sent = sent + 1;
    let before = before + 1;
    assert_eq!(env.session_count().await, before, "no session was created");
    assert_eq!(env.requests().await.len(), sent, "no model call was made");
    let session = server
        .call("agent_get_session", json!({"session_id": id}))
        .await;
    assert_eq!(session["request_count"], json!(2), "{session}");
    assert_eq!(session["status"], json!("completed"), "{session}");
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_budgets_models_and_efforts_are_validation_errors() {
    let env = TestEnv::new().await;
    env.reply_text("never").await;
    let server = env.start().await;
    let cases = [
        (
            json!({"max_budget_usd": 0}),
            "max_budget_usd: input should be greater than 0 and at most 1000000",
        ),
        (
            json!({"max_budget_usd": -1}),
            "max_budget_usd: input should be greater than 0",
        ),
        (
            json!({"max_budget_usd": 1e7}),
            "max_budget_usd: input should be greater than 0",
        ),
        (
            json!({"max_total_tokens": 0}),
            "max_total_tokens: input should be an integer from 1 to",
        ),
        (
            json!({"max_total_tokens": 1.5}),
            "max_total_tokens: input should be an integer",
        ),
        (json!({"model": ""}), "model: must be 1 to 128 bytes long"),
        (
            json!({"model": "x".repeat(129)}),
            "model: must be 1 to 128 bytes long",
        ),
        (
            json!({"model": "--dangerously-skip-permissions"}),
            "model: must not start with '-'",
        ),
        (
            json!({"model": "a b"}),
            "model: may hold only letters, digits and '-_.:@/'",
        ),
        (
            json!({"effort": "extreme"}),
            "effort: input should be one of ['high', 'low', 'max', 'medium', 'xhigh'], got 'extreme'",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = json!({"task": "t"});
        for (k, v) in extra.as_object().unwrap() {
            args[k] = v.clone();
        }
        let result = server.call_raw("agent_run_task", args.clone()).await;
        // The schema layer answers some first (types, enums, ranges it publishes); the
        // handler layer the rest, as a validation_error envelope.
        let message = if result.is_error == Some(true) {
            only_text(&result)
        } else {
            let v = parse_single_text(&result);
            assert_eq!(v["ok"], json!(false), "{args}: {v}");
            assert_eq!(
                v["errors"][0]["code"],
                json!("validation_error"),
                "{args}: {v}"
            );
            v["errors"][0]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        assert!(
            message.contains(expected) || message.starts_with("Input validation error: "),
            "{args}: {message}"
        );
    }
    // The schema layer catches wrong types first; the handler the ranges.
    let v = server
        .call_raw(
            "agent_run_task",
            json!({"task": "t", "max_budget_usd": "1"}),
        )
        .await;
    assert_eq!(
        only_text(&v),
        "Input validation error: '1' is not of type 'number'"
    );
    // The handler layer sees what the schema cannot say: 0 is not above 0.
    let v = server
        .call(
            "agent_verify_task",
            json!({"task": "Check it.", "max_budget_usd": 0}),
        )
        .await;
    assert_eq!(v["ok"], json!(false), "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("max_budget_usd: input should be greater than 0"),
        "{v}"
    );
    assert_eq!(env.session_count().await, 0);
    assert!(env.requests().await.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn bad_spending_settings_stop_the_server_at_startup() {
    for (var, value, expected) in [
        (
            "CLAUDE_AGENT_MCP_MAX_BUDGET_USD",
            "gold=1",
            "CLAUDE_AGENT_MCP_MAX_BUDGET_USD: unknown profile 'gold'",
        ),
        (
            "CLAUDE_AGENT_MCP_MAX_BUDGET_USD",
            "0",
            "CLAUDE_AGENT_MCP_MAX_BUDGET_USD: '0' is not a number of dollars above 0",
        ),
        (
            "CLAUDE_AGENT_MCP_MAX_TOTAL_TOKENS",
            "1,general=5,general=6",
            "is given twice",
        ),
        (
            "CLAUDE_AGENT_MCP_ALLOWED_MODELS",
            "ok,-x",
            "CLAUDE_AGENT_MCP_ALLOWED_MODELS: '-x' must not start with '-'",
        ),
        (
            "CLAUDE_AGENT_MCP_MODEL_PRICES",
            "m=1",
            "needs two or four prices",
        ),
        (
            "CLAUDE_AGENT_MCP_MODEL_PRICES",
            "m=1/-2",
            "needs two or four prices",
        ),
        (
            "CLAUDE_AGENT_MCP_MODEL_PRICES",
            "noequals",
            "is not MODEL=INPUT/OUTPUT",
        ),
    ] {
        let mut env = TestEnv::new().await;
        env.set(var, value);
        let (code, _, stderr) = env.run_to_exit(&[]).await;
        assert_eq!(code, 1, "{var}={value}: {stderr}");
        assert!(stderr.contains(expected), "{var}={value}: {stderr}");
    }
    // The claude_code backend cannot hold a token cap.
    let mut cli = Cli::new("native").await;
    cli.env.set("CLAUDE_AGENT_MCP_MAX_TOTAL_TOKENS", "1000");
    let (code, _, stderr) = cli.env.run_to_exit(&[]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "CLAUDE_AGENT_MCP_MAX_TOTAL_TOKENS cannot be enforced by the claude_code backend"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_claude_code_cli_gets_the_budget_model_and_effort_and_its_budget_stop_is_no_failure() {
    let mut cli = Cli::new("native").await;
    cli.env
        .set("CLAUDE_AGENT_MCP_ALLOWED_MODELS", "claude-opus-4-6")
        .set("CLAUDE_AGENT_MCP_MAX_BUDGET_USD", "0.5");
    cli.script(
        "stdout",
        r#"{"type":"result","subtype":"error_max_budget_usd","is_error":true,"result":"partial work","session_id":"s-1","num_turns":3,"total_cost_usd":0.51,"usage":{"input_tokens":100,"output_tokens":50},"errors":["Reached maximum budget ($0.5)"]}"#,
    );
    let server = cli.env.start().await;
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "Work.", "model": "claude-opus-4-6", "effort": "max", "max_budget_usd": 2}),
        )
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(v["status"], json!("completed"));
    assert_eq!(v["result"]["output_text"], json!("partial work"));
    assert_eq!(v["result"]["usage"]["total_cost_usd"], json!(0.51));
    let w = warnings(&v);
    assert!(
        w.contains(&"Budget reached (max_budget_usd $0.5): the Claude Code CLI stopped; spent $0.510000; the output may be incomplete".to_owned()),
        "{v}"
    );
    assert!(
        w.contains(
            &"max_budget_usd lowered to the operator's cap of $0.5 for profile 'general'"
                .to_owned()
        ),
        "{v}"
    );
    let argv = cli.argv(1);
    let after = |flag: &str| {
        let i = argv
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{flag} in {argv:?}"));
        argv[i + 1].clone()
    };
    assert_eq!(after("--model"), "claude-opus-4-6");
    assert_eq!(
        argv.iter().filter(|a| *a == "--model").count(),
        1,
        "{argv:?}"
    );
    assert_eq!(after("--effort"), "max");
    assert_eq!(after("--max-budget-usd"), "0.5");
    // A token budget is refused on this backend, before anything runs.
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "Work.", "max_total_tokens": 10}),
        )
        .await;
    assert_eq!(v["errors"][0]["code"], json!("validation_error"), "{v}");
    assert_eq!(
        v["errors"][0]["message"],
        json!("max_total_tokens cannot be enforced by the claude_code backend; use max_budget_usd")
    );
    assert_eq!(cli.invocations(), 1, "the CLI did not run again");
    server.shutdown().await;
}

#[tokio::test]
async fn text_mode_passes_the_spend_arguments_before_the_prompt() {
    let mut cli = Cli::new("text").await;
    cli.env
        .set("CLAUDE_AGENT_MCP_ALLOWED_MODELS", "claude-opus-4-6");
    cli.script("stdout", "answer");
    let server = cli.env.start().await;
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "Work.", "model": "claude-opus-4-6", "max_budget_usd": 1.25}),
        )
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    let argv = cli.argv(1);
    assert_eq!(&argv[..2], ["--model", "claude-opus-4-6"], "{argv:?}");
    let print = argv.iter().position(|a| a == "--print").unwrap();
    let budget = argv.iter().position(|a| a == "--max-budget-usd").unwrap();
    assert!(budget < print, "{argv:?}");
    assert_eq!(argv[budget + 1], "1.25");
    assert!(argv.last().unwrap().contains("Work."), "{argv:?}");
    server.shutdown().await;
}

/// The next call's estimate counts the tool results it would carry: a model asking to read a
/// large file cannot take a run past its token budget with the call that sends it.
#[tokio::test]
async fn large_tool_results_count_before_the_call_that_would_send_them() {
    let env = endless_tool_loop().await;
    // 300 lines, 30,300 bytes: about 10,000 tokens at the estimate's three bytes each.
    std::fs::write(
        env.cwd().join("notes.txt"),
        format!("{}\n", "x".repeat(100)).repeat(300),
    )
    .unwrap();
    let server = env.start().await;
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "Read it.", "max_total_tokens": 5000}),
        )
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(
        env.requests().await.len(),
        1,
        "the second call was never sent"
    );
    assert!(
        warnings(&v).iter().any(|w| w.starts_with(
            "Budget reached (max_total_tokens 5000): stopped before the next model call; spent $0.004500 and 1100 tokens"
        )),
        "{v}"
    );
    server.shutdown().await;
}

/// A call that costs more than the budget on its own (the first call is always made) ends
/// with a warning that says so.
#[tokio::test]
async fn a_call_that_passes_the_budget_on_its_own_is_reported() {
    let env = TestEnv::new().await;
    let mut reply = text_reply("expensive");
    reply["usage"] = json!({"input_tokens": 100000, "output_tokens": 1000});
    env.reply(wiremock::ResponseTemplate::new(200).set_body_json(reply))
        .await;
    let server = env.start().await;
    let v = server
        .call(
            "agent_run_task",
            json!({"task": "Do it.", "max_budget_usd": 0.01}),
        )
        .await;
    assert_eq!(v["ok"], json!(true), "{v}");
    assert_eq!(
        warnings(&v),
        [
            "Budget reached (max_budget_usd $0.01): the last model call went past it; spent $0.315000 and 101000 tokens; the output may be incomplete"
        ],
        "{v}"
    );
    server.shutdown().await;
}
