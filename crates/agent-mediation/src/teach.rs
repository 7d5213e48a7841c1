//! The prompt section that teaches the model the request protocol (an addition: the original
//! never told the model about mediation; `docs/reference/mediation.md#6-teaching-the-model`).
//!
//! [`teaching_prompt`] describes the block formats, the limits and the tools the model may
//! actually request (visible to the profile, allowed and not denied). It returns `None` when
//! there is nothing the model could usefully request, so a prompt never advertises a protocol
//! whose every request would be rejected.

use agent_core::ToolDefinition;
use agent_core::text::truncate_chars;

use crate::block::ActionType;
use crate::policy::MediationSettings;

/// The section header.
pub const HEADER_MEDIATED_TOOL_REQUESTS: &str = "[Mediated Tool Requests]";
/// Tool descriptions in the section are cut to this many characters.
pub const MAX_DESCRIPTION_CHARS: usize = 200;

/// The teaching section for a session that sees `visible_tools` (the federated tools of its
/// profile), or `None` when mediation is disabled, a limit is zero, no action type is
/// allowed, or no visible tool passes the allow/deny lists.
pub fn teaching_prompt(
    settings: &MediationSettings,
    visible_tools: &[ToolDefinition],
) -> Option<String> {
    if !settings.enabled
        || settings.max_actions_per_turn <= 0
        || settings.max_session_approvals <= 0
    {
        return None;
    }
    let types: Vec<&str> = ActionType::ALL
        .iter()
        .filter(|t| settings.action_type_allowed(t.as_str()))
        .map(|t| t.as_str())
        .collect();
    if types.is_empty() {
        return None;
    }
    let tools: Vec<&ToolDefinition> = visible_tools
        .iter()
        .filter(|t| settings.tool_allowed(&t.name))
        .collect();
    if tools.is_empty() {
        return None;
    }

    let per_turn = settings.max_actions_per_turn;
    let mut lines = vec![
        HEADER_MEDIATED_TOOL_REQUESTS.to_owned(),
        "You cannot call tools directly here, but the runtime can run a few read-only tools for you. \
         After your reply is complete, it scans the reply for request blocks, checks each one \
         against its policy and runs the approved ones. You will not see any result in this reply."
            .to_owned(),
        if settings.include_results_in_continuation {
            "A summary of each result is given to you at the start of the next turn of this session, \
             under [Mediated Execution Context]."
        } else {
            "The results are recorded in the session's audit log; they are not shown to you later."
        }
        .to_owned(),
        "To request a tool, put a block like this in your reply (exactly one JSON object between the tags):"
            .to_owned(),
        "<mediated_action_request>".to_owned(),
        r#"{"mediation_version":"v0.8.0","request_id":"req_001","action_type":"read","target_tool":"<tool name>","arguments":{"<argument>":"<value>"},"justification":"<why you need it>"}"#
            .to_owned(),
        "</mediated_action_request>".to_owned(),
        format!("- action_type: {}.", or_list(&types)),
        "- target_tool: exactly one of the tool names listed below; any other name is rejected."
            .to_owned(),
        "- arguments: a JSON object with the tool's arguments (names marked * are required)."
            .to_owned(),
        "- request_id: a new id for each request; justification: one short sentence.".to_owned(),
        format!(
            "- At most {per_turn} request{} per reply {} approved; further ones are rejected. \
             This session allows {} approvals in total.",
            if per_turn == 1 { "" } else { "s" },
            if per_turn == 1 { "is" } else { "are" },
            settings.max_session_approvals
        ),
    ];
    if settings.max_workflow_steps > 1 {
        lines.extend([
            format!(
                "To request up to {} steps at once, use one workflow block instead (its steps count toward the same per-reply limit):",
                settings.max_workflow_steps
            ),
            "<mediated_workflow_request>".to_owned(),
            r#"{"mediation_version":"v0.9.0","workflow_id":"wf_001","justification":"<why>","steps":[{"step_index":0,"action_type":"read","target_tool":"<tool name>","arguments":{},"justification":"<why this step>"}]}"#
                .to_owned(),
            "</mediated_workflow_request>".to_owned(),
        ]);
    }
    lines.push(
        "Request a tool only when you need its result, and never write as if a request had already run."
            .to_owned(),
    );
    lines.push("Tools you may request:".to_owned());
    lines.extend(tools.iter().map(|t| tool_line(t)));
    Some(lines.join("\n"))
}

/// `- name: description (arguments: a*, b)`.
fn tool_line(tool: &ToolDefinition) -> String {
    let mut line = format!("- {}", tool.name);
    let description = tool.description.trim().lines().next().unwrap_or("").trim();
    if !description.is_empty() {
        let head = truncate_chars(description, MAX_DESCRIPTION_CHARS);
        line.push_str(": ");
        line.push_str(head);
        if head.len() < description.len() {
            line.push('…');
        }
    }
    let required = tool.required();
    let mut arguments: Vec<String> = tool
        .properties()
        .map(|props| {
            props
                .keys()
                .map(|k| {
                    if required.contains(&k.as_str()) {
                        format!("{k}*")
                    } else {
                        k.clone()
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    // Required names the schema does not describe under `properties`.
    for name in &required {
        let starred = format!("{name}*");
        if !arguments.contains(&starred) {
            arguments.push(starred);
        }
    }
    if arguments.is_empty() {
        line.push_str(" (no arguments)");
    } else {
        line.push_str(&format!(" (arguments: {})", arguments.join(", ")));
    }
    line
}

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
fn or_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn tool(name: &str, description: &str, schema: Value) -> ToolDefinition {
        ToolDefinition {
            name: name.into(),
            description: description.into(),
            input_schema: schema.into(),
        }
    }

    #[test]
    fn tool_lines_list_arguments_and_required_marks() {
        let t = tool(
            "fs__read",
            "Reads a file.\nMore text.",
            json!({"type": "object", "properties": {"path": {}, "limit": {}}, "required": ["path"]}),
        );
        assert_eq!(
            tool_line(&t),
            "- fs__read: Reads a file. (arguments: path*, limit)"
        );
        let bare = tool("s__ping", "", json!({"type": "object"}));
        assert_eq!(tool_line(&bare), "- s__ping (no arguments)");
        let long = tool("s__x", &"d".repeat(250), json!({"required": ["q"]}));
        assert_eq!(
            tool_line(&long),
            format!("- s__x: {}… (arguments: q*)", "d".repeat(200))
        );
    }

    #[test]
    fn or_lists_read_naturally() {
        assert_eq!(or_list(&["read"]), "\"read\"");
        assert_eq!(or_list(&["read", "lookup"]), "\"read\" or \"lookup\"");
        assert_eq!(
            or_list(&["read", "lookup", "inspect"]),
            "\"read\", \"lookup\" or \"inspect\""
        );
    }
}
