//! Prompt construction for the Claude Code CLI (`docs/reference/backends.md#54-prompt-construction`
//! and `docs/reference/backends.md#55-limited-tool-forwarding`).
//!
//! Sections are joined with [`SEPARATOR`]; empty sections are omitted. Two shapes exist:
//!
//! * [`continuation_prompt`] (`docs/reference/backends.md#541-continuation-prompt`): used when the
//!   request is a continuation and carries a structured [`ContinuationContext`];
//! * [`initial_prompt`] (`docs/reference/backends.md#542-initial-prompt`): `agent_run_task`,
//!   `agent_verify_task`, and a continuation without a context object (flat history).
//!
//! [`tools_block`] renders the `[Available Tools]` text injection of compatible federated
//! tools (`docs/reference/backends.md#55-limited-tool-forwarding`).

use agent_core::continuation::ContinuationContext;
use agent_core::text::truncate_chars;
use agent_core::{ChatMessage, ChatRole, ToolDefinition};
use serde_json::Value;

/// `"\n" + "─"×60 + "\n"` (sixty U+2500 BOX DRAWINGS LIGHT HORIZONTAL).
pub const SEPARATOR: &str = "\n────────────────────────────────────────────────────────────\n";
/// History entries and recent-interaction texts are cut to this many characters.
pub const MAX_ENTRY_CHARS: usize = 2000;
/// Appended to a text that was cut.
pub const TRUNCATED_SUFFIX: &str = " [truncated]";
/// The flat history keeps this many most recent messages.
pub const MAX_FLAT_HISTORY_MESSAGES: usize = 20;

pub const HEADER_SYSTEM: &str = "[System]";
pub const HEADER_CONTINUATION_SESSION: &str = "[Continuation Session]";
pub const HEADER_SESSION_CONTEXT: &str = "[Session Context]";
pub const HEADER_SESSION_SUMMARY: &str = "[Session Summary]";
pub const HEADER_RECENT_INTERACTION_STATE: &str = "[Recent Interaction State]";
pub const HEADER_AVAILABLE_TOOLS: &str = "[Available Tools]";
pub const HEADER_CONVERSATION_HISTORY: &str = "[Conversation History]";
pub const HEADER_RELEVANT_WARNINGS: &str = "[Relevant Warnings]";
pub const HEADER_TOOL_FORWARDING_CONTEXT: &str = "[Tool Forwarding Context]";
pub const HEADER_ACTIVE_CONSTRAINTS: &str = "[Active Constraints]";
pub const HEADER_MEDIATED_EXECUTION_CONTEXT: &str = "[Mediated Execution Context]";
pub const HEADER_CURRENT_REQUEST: &str = "[Current Request]";
pub const HEADER_INSTRUCTIONS: &str = "[Instructions]";
pub const HEADER_USER: &str = "[User]";
pub const HEADER_ASSISTANT: &str = "[Assistant]";

/// `[Instructions]` of a continuation with a structured context.
pub const INSTRUCTIONS_CONTINUATION_CONTEXT: &str = "You are continuing this session. Resume from where you left off, building on the session summary and recent interaction state above.";
/// `[Instructions]` of a flat continuation.
pub const INSTRUCTIONS_FLAT_CONTINUATION: &str = "You are continuing this session. Resume from where you left off, building on the prior conversation.";
/// `[Instructions]` of a first turn (run, verify).
pub const INSTRUCTIONS_INITIAL: &str = "Respond to the current request above. Use the conversation history and session context as background.";

/// The first line of `[Mediated Execution Context]`.
pub const MEDIATED_INTRO: &str =
    "The following tool actions were executed by the runtime on your behalf during prior turns:";
/// The last line of `[Mediated Execution Context]`.
pub const MEDIATED_NOTE: &str =
    "Note: These were runtime-mediated actions — not native tool calls.";

/// The two fixed lines under `[Available Tools]`.
pub const TOOLS_INTRO: &str = "The following tools are described for context. They represent capabilities available in this session.";
pub const TOOLS_NOTE: &str = "Note: These tools are described for context only — they are not directly invocable in this execution mode.";

/// Cuts `text` to [`MAX_ENTRY_CHARS`] characters, appending [`TRUNCATED_SUFFIX`] when longer.
pub fn cut_entry(text: &str) -> String {
    let head = truncate_chars(text, MAX_ENTRY_CHARS);
    if head.len() < text.len() {
        format!("{head}{TRUNCATED_SUFFIX}")
    } else {
        head.to_owned()
    }
}

/// Whether the flat history is cut to its last [`MAX_FLAT_HISTORY_MESSAGES`] messages (and the
/// history truncation warning is due).
pub fn history_truncated(history: &[ChatMessage]) -> bool {
    history.len() > MAX_FLAT_HISTORY_MESSAGES
}

/// The `[Available Tools]` block for `tools` (already screened), or `None` when empty.
///
/// ```text
/// [Available Tools]
/// The following tools are described for context. …
/// Note: These tools are described for context only — …
///
/// Tool: <name>
/// Description: <description>
/// Parameters:
///   - <param> (<type or "any">, <required|optional>): <description or "(no description)">
/// ```
pub fn tools_block(tools: &[ToolDefinition]) -> Option<String> {
    if tools.is_empty() {
        return None;
    }
    let mut lines = vec![
        HEADER_AVAILABLE_TOOLS.to_owned(),
        TOOLS_INTRO.to_owned(),
        TOOLS_NOTE.to_owned(),
    ];
    for tool in tools {
        lines.push(String::new());
        lines.push(format!("Tool: {}", tool.name));
        lines.push(format!("Description: {}", tool.description.trim()));
        if let Some(properties) = tool.properties().filter(|p| !p.is_empty()) {
            let required = tool.required();
            lines.push("Parameters:".to_owned());
            for (name, schema) in properties {
                let kind = param_type(schema);
                let needed = if required.contains(&name.as_str()) {
                    "required"
                } else {
                    "optional"
                };
                let description = schema
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .unwrap_or("(no description)");
                lines.push(format!("  - {name} ({kind}, {needed}): {description}"));
            }
        }
    }
    Some(lines.join("\n"))
}

/// A property's `type`: a string as-is, a list of strings joined with `|`, otherwise `any`.
fn param_type(schema: &Value) -> String {
    match schema.get("type") {
        Some(Value::String(kind)) if !kind.is_empty() => kind.clone(),
        Some(Value::Array(kinds)) => {
            let kinds: Vec<&str> = kinds.iter().filter_map(Value::as_str).collect();
            if kinds.is_empty() {
                "any".to_owned()
            } else {
                kinds.join("|")
            }
        }
        _ => "any".to_owned(),
    }
}

fn section(header: &str, body: &str) -> String {
    format!("{header}\n{body}")
}

fn non_blank(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|t| !t.is_empty())
}

/// The initial / flat prompt (`docs/reference/backends.md#542-initial-prompt`): `[System]`,
/// `[Continuation Session]` or `[Session Context]` (when a summary is given), `[Available Tools]`,
/// `[Conversation History]` (last [`MAX_FLAT_HISTORY_MESSAGES`] messages), `[Current Request]` and
/// `[Instructions]`. `tools` must already be screened.
pub fn initial_prompt(
    system_prompt: &str,
    task: &str,
    session_summary: Option<&str>,
    is_continuation: bool,
    history: &[ChatMessage],
    tools: &[ToolDefinition],
) -> String {
    let mut sections = Vec::new();
    if let Some(system) = non_blank(Some(system_prompt)) {
        sections.push(section(HEADER_SYSTEM, system));
    }
    if let Some(summary) = non_blank(session_summary) {
        let header = if is_continuation {
            HEADER_CONTINUATION_SESSION
        } else {
            HEADER_SESSION_CONTEXT
        };
        sections.push(section(header, summary));
    }
    if let Some(block) = tools_block(tools) {
        sections.push(block);
    }
    let start = history.len().saturating_sub(MAX_FLAT_HISTORY_MESSAGES);
    let entries: Vec<String> = history[start..]
        .iter()
        .filter_map(|message| {
            let content = message.content.trim();
            if content.is_empty() {
                return None;
            }
            let role = match message.role {
                ChatRole::User => HEADER_USER,
                ChatRole::Assistant => HEADER_ASSISTANT,
            };
            Some(format!("{role}\n{}", cut_entry(content)))
        })
        .collect();
    if !entries.is_empty() {
        sections.push(section(HEADER_CONVERSATION_HISTORY, &entries.join("\n\n")));
    }
    if let Some(task) = non_blank(Some(task)) {
        sections.push(section(HEADER_CURRENT_REQUEST, task));
    }
    let instructions = if is_continuation {
        INSTRUCTIONS_FLAT_CONTINUATION
    } else {
        INSTRUCTIONS_INITIAL
    };
    sections.push(section(HEADER_INSTRUCTIONS, instructions));
    sections.join(SEPARATOR)
}

/// The continuation prompt (`docs/reference/backends.md#541-continuation-prompt`) rendered from a
/// structured context, sections in order: System, Continuation Session, Session Summary, Recent
/// Interaction State, Available Tools, Relevant Warnings, Tool Forwarding Context, Active
/// Constraints, Mediated Execution Context, Current Request, Instructions. `tools` must already be
/// screened.
pub fn continuation_prompt(
    system_prompt: &str,
    task: &str,
    context: &ContinuationContext,
    tools: &[ToolDefinition],
) -> String {
    let mut sections = Vec::new();
    if let Some(system) = non_blank(Some(system_prompt)) {
        sections.push(section(HEADER_SYSTEM, system));
    }

    let stats = &context.stats;
    let mut header = format!(
        "{HEADER_CONTINUATION_SESSION}\nSession: {}\nReconstruction: {}\nContext: {} turn(s) included",
        context.session_id, context.reconstruction_version, stats.turns_included
    );
    if stats.turns_omitted > 0 {
        header.push_str(&format!(", {} omitted", stats.turns_omitted));
    }
    sections.push(header);

    if let Some(summary) = non_blank(context.session_summary.as_deref()) {
        sections.push(section(HEADER_SESSION_SUMMARY, summary));
    }

    let users = &context.user_requests;
    let outputs = &context.agent_outputs;
    if !users.is_empty() || !outputs.is_empty() {
        let mut entries = vec![HEADER_RECENT_INTERACTION_STATE.to_owned()];
        let pairs = users.len().min(outputs.len());
        for (user, output) in users.iter().zip(outputs).take(pairs) {
            entries.push(format!("{HEADER_USER}\n{}", cut_entry(user)));
            entries.push(format!("{HEADER_ASSISTANT}\n{}", cut_entry(output)));
        }
        for user in users.iter().skip(pairs) {
            entries.push(format!("{HEADER_USER}\n{}", cut_entry(user)));
        }
        sections.push(entries.join("\n\n"));
    }

    if let Some(block) = tools_block(tools) {
        sections.push(block);
    }

    if !context.warnings.is_empty() {
        let mut lines = vec![HEADER_RELEVANT_WARNINGS.to_owned()];
        lines.extend(context.warnings.iter().map(|w| format!("- {w}")));
        sections.push(lines.join("\n"));
    }

    if let Some(forwarding) = &context.forwarding {
        let mut lines = vec![
            HEADER_TOOL_FORWARDING_CONTEXT.to_owned(),
            format!("Mode: {}", forwarding.mode),
        ];
        if !forwarding.compatible_tool_names.is_empty() {
            lines.push(format!(
                "Forwarded: {}",
                forwarding.compatible_tool_names.join(", ")
            ));
        }
        if !forwarding.dropped_tool_names.is_empty() {
            lines.push(format!(
                "Dropped: {}",
                forwarding.dropped_tool_names.join(", ")
            ));
        }
        lines.extend(
            forwarding
                .recent_drop_reasons
                .iter()
                .map(|r| format!("Drop reason: {r}")),
        );
        sections.push(lines.join("\n"));
    }

    if !context.active_constraints.is_empty() {
        let mut lines = vec![HEADER_ACTIVE_CONSTRAINTS.to_owned()];
        lines.extend(
            context
                .active_constraints
                .iter()
                .map(|(key, value)| format!("{key}: {value}")),
        );
        sections.push(lines.join("\n"));
    }

    if !context.mediated_summaries.is_empty() {
        let mut lines = vec![
            HEADER_MEDIATED_EXECUTION_CONTEXT.to_owned(),
            MEDIATED_INTRO.to_owned(),
        ];
        lines.extend(context.mediated_summaries.iter().map(|s| format!("- {s}")));
        lines.push(MEDIATED_NOTE.to_owned());
        sections.push(lines.join("\n"));
    }

    if let Some(task) = non_blank(Some(task)) {
        sections.push(section(HEADER_CURRENT_REQUEST, task));
    }
    sections.push(section(
        HEADER_INSTRUCTIONS,
        INSTRUCTIONS_CONTINUATION_CONTEXT,
    ));
    sections.join(SEPARATOR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_core::continuation::{ContinuationStats, ForwardingHistory};
    use serde_json::json;

    #[test]
    fn separator_is_sixty_box_characters() {
        assert_eq!(SEPARATOR.chars().count(), 62);
        assert!(SEPARATOR.starts_with('\n') && SEPARATOR.ends_with('\n'));
        assert_eq!(
            SEPARATOR
                .trim()
                .chars()
                .filter(|c| *c == '\u{2500}')
                .count(),
            60
        );
    }

    #[test]
    fn run_task_prompt_has_three_sections() {
        let prompt = initial_prompt("  sys  ", "  do it \n", None, false, &[], &[]);
        assert_eq!(
            prompt,
            format!(
                "[System]\nsys{SEPARATOR}[Current Request]\ndo it{SEPARATOR}[Instructions]\n{INSTRUCTIONS_INITIAL}"
            )
        );
    }

    #[test]
    fn flat_continuation_prompt() {
        let mut history: Vec<ChatMessage> = (0..22)
            .map(|i| ChatMessage {
                role: if i % 2 == 0 {
                    ChatRole::User
                } else {
                    ChatRole::Assistant
                },
                content: format!(" m{i} "),
                blocks: None,
            })
            .collect();
        history[3].content = "   ".to_owned();
        history[5].content = "x".repeat(2001);
        assert!(history_truncated(&history));
        assert!(!history_truncated(&history[..20]));
        let prompt = initial_prompt("", "next", Some(" sum "), true, &history, &[]);
        let sections: Vec<&str> = prompt.split(SEPARATOR).collect();
        assert_eq!(sections[0], "[Continuation Session]\nsum");
        assert!(
            sections[1].starts_with(
                "[Conversation History]\n[User]\nm2\n\n[User]\nm4\n\n[Assistant]\nxxx"
            )
        );
        assert!(!sections[1].contains("m1\n"));
        assert!(!sections[1].contains("[Assistant]\n\n"));
        assert!(sections[1].contains(&format!("{} [truncated]", "x".repeat(2000))));
        assert!(sections[1].ends_with("[Assistant]\nm21"));
        assert_eq!(sections[2], "[Current Request]\nnext");
        assert_eq!(
            sections[3],
            format!("[Instructions]\n{INSTRUCTIONS_FLAT_CONTINUATION}")
        );
        let run = initial_prompt("s", "t", Some("ctx"), false, &[], &[]);
        assert!(run.contains("[Session Context]\nctx"));
    }

    #[test]
    fn tools_block_text() {
        let tools = [
            ToolDefinition {
                name: "srv__search".to_owned(),
                description: "Search things".into(),
                input_schema: json!({
                    "type": "object",
                    "properties": {
                        "query": {"type": "string", "description": "What to find"},
                        "limit": {"type": ["integer", "null"]},
                        "raw": {}
                    },
                    "required": ["query"]
                })
                .into(),
            },
            ToolDefinition {
                name: "srv__ping".to_owned(),
                description: "Ping".into(),
                input_schema: json!({"type": "object"}).into(),
            },
        ];
        assert_eq!(
            tools_block(&tools).unwrap(),
            format!(
                "[Available Tools]\n{TOOLS_INTRO}\n{TOOLS_NOTE}\n\nTool: srv__search\nDescription: Search things\nParameters:\n  - query (string, required): What to find\n  - limit (integer|null, optional): (no description)\n  - raw (any, optional): (no description)\n\nTool: srv__ping\nDescription: Ping"
            )
        );
        assert_eq!(tools_block(&[]), None);
    }

    #[test]
    fn continuation_prompt_sections_in_order() {
        let context = ContinuationContext {
            session_id: "sess_9".to_owned(),
            reconstruction_version: "v1.0.0".to_owned(),
            user_requests: vec!["u1".to_owned(), "u2".to_owned(), "u3".to_owned()],
            agent_outputs: vec!["o1".to_owned(), "o2".to_owned()],
            warnings: vec!["w1".to_owned()],
            forwarding: Some(ForwardingHistory {
                mode: "limited_text_injection".to_owned(),
                compatible_tool_names: vec!["a".to_owned(), "b".to_owned()],
                dropped_tool_names: vec!["c".to_owned()],
                recent_drop_reasons: vec!["r1".to_owned()],
            }),
            active_constraints: vec![
                ("working_directory".to_owned(), "/w".to_owned()),
                ("profile".to_owned(), "general".to_owned()),
            ],
            mediated_summaries: vec!["Tool t: ok".to_owned()],
            session_summary: Some("summary".to_owned()),
            stats: ContinuationStats {
                turns_included: 2,
                turns_omitted: 1,
                ..ContinuationStats::default()
            },
        };
        let prompt = continuation_prompt("sys", " msg ", &context, &[]);
        let sections: Vec<&str> = prompt.split(SEPARATOR).collect();
        assert_eq!(
            sections,
            [
                "[System]\nsys",
                "[Continuation Session]\nSession: sess_9\nReconstruction: v1.0.0\nContext: 2 turn(s) included, 1 omitted",
                "[Session Summary]\nsummary",
                "[Recent Interaction State]\n\n[User]\nu1\n\n[Assistant]\no1\n\n[User]\nu2\n\n[Assistant]\no2\n\n[User]\nu3",
                "[Relevant Warnings]\n- w1",
                "[Tool Forwarding Context]\nMode: limited_text_injection\nForwarded: a, b\nDropped: c\nDrop reason: r1",
                "[Active Constraints]\nworking_directory: /w\nprofile: general",
                &format!(
                    "[Mediated Execution Context]\n{MEDIATED_INTRO}\n- Tool t: ok\n{MEDIATED_NOTE}"
                ),
                "[Current Request]\nmsg",
                &format!("[Instructions]\n{INSTRUCTIONS_CONTINUATION_CONTEXT}"),
            ]
        );

        let empty = ContinuationContext {
            session_id: "s".to_owned(),
            reconstruction_version: "v1.0.0".to_owned(),
            ..ContinuationContext::default()
        };
        let prompt = continuation_prompt("", "m", &empty, &[]);
        assert_eq!(
            prompt,
            format!(
                "[Continuation Session]\nSession: s\nReconstruction: v1.0.0\nContext: 0 turn(s) included{SEPARATOR}[Current Request]\nm{SEPARATOR}[Instructions]\n{INSTRUCTIONS_CONTINUATION_CONTEXT}"
            )
        );
    }
}
