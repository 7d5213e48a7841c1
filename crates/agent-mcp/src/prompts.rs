//! MCP prompts and argument completion (`docs/reference/prompts.md`): the commands a client
//! shows its user (in Claude Code, slash commands such as `/mcp__claude-agent__delegate_task`),
//! each rendering one user message that asks the client's model to call one of our tools with
//! the arguments given; and `completion/complete` for `session_id` arguments, recent sessions
//! first.
//!
//! A prompt is offered only when the tool it calls is published (restricted mode publishes
//! fewer). Every argument is bounded like the tool argument it becomes; an unknown prompt, an
//! unknown or missing argument, or an oversized one is `-32602` (invalid params) naming it.

use agent_core::request::{MAX_PATH_BYTES, MAX_PATHS, MAX_TEXT_BYTES};
use agent_core::{Engine, ListSessionsRequest};
use rmcp::model::{
    CompleteRequestParams, CompleteResult, CompletionInfo, ErrorData, GetPromptResult, Prompt,
    PromptArgument, PromptMessage, Reference, Role,
};
use serde_json::{Map, Value};

use crate::tools::ToolName;

/// The most recently updated sessions `completion/complete` searches for a `session_id`.
pub const COMPLETION_SCAN: u32 = 200;

/// A `session_id` prefix longer than this completes to nothing (no id is that long).
pub const MAX_COMPLETION_PREFIX_BYTES: usize = 128;

/// What kind of value an argument is, and so its bound and how it becomes a tool argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Free text, at most [`MAX_TEXT_BYTES`].
    Text,
    /// A path, at most [`MAX_PATH_BYTES`].
    Path,
    /// Paths separated by newlines or commas: a list of at most [`MAX_PATHS`] paths.
    PathList,
    /// A session id (completed by `completion/complete`).
    SessionId,
}

#[derive(Debug)]
struct Arg {
    name: &'static str,
    /// The tool argument it becomes.
    tool_arg: &'static str,
    description: &'static str,
    required: bool,
    kind: Kind,
}

#[derive(Debug)]
pub struct PromptDef {
    name: &'static str,
    title: &'static str,
    description: &'static str,
    tool: ToolName,
    args: &'static [Arg],
    /// What the model should report once the tool answers.
    then: &'static str,
}

/// Every prompt, in the order `prompts/list` gives them.
static PROMPTS: [PromptDef; 3] = [
    PromptDef {
        name: "delegate_task",
        title: "Delegate a task to a Claude agent session",
        description: "Run a task in a new durable agent session (agent_run_task) and report its \
                      summary and session id.",
        tool: ToolName::RunTask,
        args: &[
            Arg {
                name: "task",
                tool_arg: "task",
                description: "What the agent should do.",
                required: true,
                kind: Kind::Text,
            },
            Arg {
                name: "working_directory",
                tool_arg: "working_directory",
                description: "The directory to work in (inside the allowed directories).",
                required: false,
                kind: Kind::Path,
            },
            Arg {
                name: "profile",
                tool_arg: "system_profile",
                description: "The system profile (general, verification, …).",
                required: false,
                kind: Kind::Text,
            },
        ],
        then: "When it answers, report its summary, its status and its session_id (the session \
               can be continued with agent_continue_session).",
    },
    PromptDef {
        name: "verify_change",
        title: "Verify a change against evidence",
        description: "Ask for a fail-closed verdict on a claim or change, from evidence files \
                      (agent_verify_task).",
        tool: ToolName::VerifyTask,
        args: &[
            Arg {
                name: "task",
                tool_arg: "task",
                description: "The claim or change to verify.",
                required: true,
                kind: Kind::Text,
            },
            Arg {
                name: "evidence",
                tool_arg: "evidence_paths",
                description: "Evidence files, separated by newlines or commas.",
                required: false,
                kind: Kind::PathList,
            },
            Arg {
                name: "scope",
                tool_arg: "scope",
                description: "What the verdict covers.",
                required: false,
                kind: Kind::Text,
            },
        ],
        then: "When it answers, report the verdict, the reasons and any missing evidence \
               exactly as given; do not soften a failed or inconclusive verdict.",
    },
    PromptDef {
        name: "resume_session",
        title: "Resume an agent session",
        description: "Continue an existing session with a new message \
                      (agent_continue_session).",
        tool: ToolName::ContinueSession,
        args: &[
            Arg {
                name: "session_id",
                tool_arg: "session_id",
                description: "The session to continue (sess_…); completion offers recent ones.",
                required: true,
                kind: Kind::SessionId,
            },
            Arg {
                name: "message",
                tool_arg: "message",
                description: "The next instruction for the agent.",
                required: true,
                kind: Kind::Text,
            },
        ],
        then: "When it answers, report its summary and its status.",
    },
];

/// The prompts whose tools are among `published`, in list order.
pub fn offered(published: &[ToolName]) -> Vec<&'static PromptDef> {
    PROMPTS
        .iter()
        .filter(|p| published.contains(&p.tool))
        .collect()
}

/// The `prompts/list` entry of a prompt.
pub fn listed(prompt: &PromptDef) -> Prompt {
    let args = prompt
        .args
        .iter()
        .map(|a| {
            PromptArgument::new(a.name)
                .with_description(a.description)
                .with_required(a.required)
        })
        .collect();
    Prompt::new(prompt.name, Some(prompt.description), Some(args)).with_title(prompt.title)
}

fn invalid(message: String) -> ErrorData {
    ErrorData::invalid_params(message, None)
}

fn bound(kind: Kind) -> usize {
    match kind {
        Kind::Text => MAX_TEXT_BYTES,
        Kind::Path | Kind::SessionId => MAX_PATH_BYTES,
        Kind::PathList => MAX_PATHS * (MAX_PATH_BYTES + 1),
    }
}

/// The tool arguments `arguments` make for `prompt`, or the first problem with them.
fn tool_arguments(
    prompt: &PromptDef,
    arguments: Option<&Map<String, Value>>,
) -> Result<Map<String, Value>, ErrorData> {
    let empty = Map::new();
    let arguments = arguments.unwrap_or(&empty);
    if let Some(unknown) = arguments
        .keys()
        .find(|k| !prompt.args.iter().any(|a| a.name == k.as_str()))
    {
        return Err(invalid(format!(
            "unknown argument for prompt {}: {}",
            prompt.name,
            agent_core::text::truncate_chars(unknown, 64)
        )));
    }
    let mut out = Map::new();
    for arg in prompt.args {
        let value = match arguments.get(arg.name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.trim()),
            Some(_) => {
                return Err(invalid(format!(
                    "argument {} of prompt {} must be a string",
                    arg.name, prompt.name
                )));
            }
        };
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            if arg.required {
                return Err(invalid(format!(
                    "missing required argument for prompt {}: {}",
                    prompt.name, arg.name
                )));
            }
            continue;
        };
        let max = bound(arg.kind);
        if value.len() > max {
            return Err(invalid(format!(
                "argument {} of prompt {} is {} bytes, more than {max}",
                arg.name,
                prompt.name,
                value.len()
            )));
        }
        let value = match arg.kind {
            Kind::PathList => {
                let paths: Vec<Value> = value
                    .split(['\n', ','])
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_owned()))
                    .collect();
                if paths.len() > MAX_PATHS {
                    return Err(invalid(format!(
                        "argument {} of prompt {} names {} paths, more than {MAX_PATHS}",
                        arg.name,
                        prompt.name,
                        paths.len()
                    )));
                }
                Value::Array(paths)
            }
            Kind::Text | Kind::Path | Kind::SessionId => Value::String(value.to_owned()),
        };
        out.insert(arg.tool_arg.to_owned(), value);
    }
    Ok(out)
}

/// `prompts/get`: one user message asking the model to call the prompt's tool.
pub fn get(
    offered: &[&'static PromptDef],
    name: &str,
    arguments: Option<&Map<String, Value>>,
) -> Result<GetPromptResult, ErrorData> {
    let prompt = offered.iter().find(|p| p.name == name).ok_or_else(|| {
        invalid(format!(
            "unknown prompt: {}",
            agent_core::text::truncate_chars(name, 64)
        ))
    })?;
    let args = tool_arguments(prompt, arguments)?;
    let rendered = serde_json::to_string_pretty(&Value::Object(args))
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
    let text = format!(
        "Call the `{tool}` tool (claude-agent-mcp server) with these arguments:\n\n```json\n{rendered}\n```\n\n{then}",
        tool = prompt.tool.as_str(),
        then = prompt.then,
    );
    Ok(
        GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)])
            .with_description(prompt.description),
    )
}

/// Whether `request` asks to complete a session id: a prompt argument of that kind, or the
/// `session_id` of a resource template.
fn completes_session_id(offered: &[&'static PromptDef], request: &CompleteRequestParams) -> bool {
    match &request.r#ref {
        Reference::Prompt(p) => offered.iter().any(|prompt| {
            prompt.name == p.name
                && prompt
                    .args
                    .iter()
                    .any(|a| a.name == request.argument.name && a.kind == Kind::SessionId)
        }),
        Reference::Resource(r) => {
            request.argument.name == "session_id" && r.uri.contains("{session_id}")
        }
        _ => false,
    }
}

/// `completion/complete`: session ids starting with the value typed so far, most recently
/// updated first (among the [`COMPLETION_SCAN`] most recent sessions); nothing for any other
/// argument.
pub async fn complete(
    engine: &Engine,
    offered: &[&'static PromptDef],
    request: &CompleteRequestParams,
) -> Result<CompleteResult, ErrorData> {
    let prefix = request.argument.value.as_str();
    if !completes_session_id(offered, request) || prefix.len() > MAX_COMPLETION_PREFIX_BYTES {
        return Ok(CompleteResult::new(CompletionInfo::default()));
    }
    let recent = engine
        .list_sessions(&ListSessionsRequest {
            limit: COMPLETION_SCAN,
            status: None,
        })
        .await
        .map_err(|e| ErrorData::internal_error(e.message, None))?;
    let matching: Vec<String> = recent
        .into_iter()
        .map(|s| s.session_id)
        .filter(|id| id.starts_with(prefix))
        .collect();
    let total = matching.len();
    let values: Vec<String> = matching
        .into_iter()
        .take(CompletionInfo::MAX_VALUES)
        .collect();
    let more = total > values.len();
    let info = CompletionInfo::with_pagination(
        values,
        Some(u32::try_from(total).unwrap_or(u32::MAX)),
        more,
    )
    .map_err(|e| ErrorData::internal_error(e, None))?;
    Ok(CompleteResult::new(info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(pairs: &[(&str, Value)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn prompts_follow_the_published_tools() {
        let all = offered(&ToolName::ALL);
        let names: Vec<&str> = all.iter().map(|p| p.name).collect();
        assert_eq!(names, ["delegate_task", "verify_change", "resume_session"]);
        let only_verify = offered(&[ToolName::VerifyTask, ToolName::GetSession]);
        assert_eq!(only_verify.len(), 1);
        assert_eq!(only_verify[0].name, "verify_change");
        assert!(
            get(&only_verify, "delegate_task", None)
                .unwrap_err()
                .message
                .contains("unknown prompt: delegate_task")
        );
    }

    #[test]
    fn arguments_become_the_tool_s_arguments() {
        let all = offered(&ToolName::ALL);
        let got = tool_arguments(
            all[1],
            Some(&args(&[
                ("task", json!("  the fix holds ")),
                ("evidence", json!("a.log, b.log\n\nc.log")),
            ])),
        )
        .unwrap();
        assert_eq!(
            Value::Object(got),
            json!({"task": "the fix holds", "evidence_paths": ["a.log", "b.log", "c.log"]})
        );
        let got = tool_arguments(
            all[0],
            Some(&args(&[
                ("task", json!("t")),
                ("profile", json!("verification")),
            ])),
        )
        .unwrap();
        assert_eq!(
            Value::Object(got),
            json!({"task": "t", "system_profile": "verification"})
        );
    }

    #[test]
    fn bad_arguments_are_invalid_params_naming_them() {
        let all = offered(&ToolName::ALL);
        let cases = [
            (
                args(&[]),
                "missing required argument for prompt resume_session: session_id",
            ),
            (
                args(&[("session_id", json!("sess_1")), ("message", json!("  "))]),
                "missing required argument for prompt resume_session: message",
            ),
            (
                args(&[("session_id", json!(7)), ("message", json!("m"))]),
                "argument session_id of prompt resume_session must be a string",
            ),
            (
                args(&[
                    ("session_id", json!("s")),
                    ("message", json!("m")),
                    ("x", json!("y")),
                ]),
                "unknown argument for prompt resume_session: x",
            ),
            (
                args(&[
                    ("session_id", json!("s".repeat(MAX_PATH_BYTES + 1))),
                    ("message", json!("m")),
                ]),
                "argument session_id of prompt resume_session is 4097 bytes, more than 4096",
            ),
        ];
        for (given, want) in cases {
            let err = tool_arguments(all[2], Some(&given)).unwrap_err();
            assert_eq!(err.code, rmcp::model::ErrorCode::INVALID_PARAMS);
            assert_eq!(err.message, want);
        }
        let many = (0..=MAX_PATHS)
            .map(|i| format!("f{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let err = tool_arguments(
            all[1],
            Some(&args(&[("task", json!("t")), ("evidence", json!(many))])),
        )
        .unwrap_err();
        assert!(
            err.message.contains("names 65 paths, more than 64"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_prompt_renders_one_user_message_with_the_tool_call() {
        let all = offered(&ToolName::ALL);
        let got = get(
            &all,
            "resume_session",
            Some(&args(&[
                ("session_id", json!("sess_abc")),
                ("message", json!("go \"on\"")),
            ])),
        )
        .unwrap();
        assert_eq!(got.messages.len(), 1);
        let text = serde_json::to_value(&got.messages[0]).unwrap();
        assert_eq!(text["role"], json!("user"));
        let body = text["content"]["text"].as_str().unwrap();
        assert!(
            body.starts_with("Call the `agent_continue_session` tool"),
            "{body}"
        );
        assert!(body.contains("\"session_id\": \"sess_abc\""), "{body}");
        assert!(body.contains(r#""message": "go \"on\"""#), "{body}");
    }
}
