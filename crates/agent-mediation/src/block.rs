//! The request-block parser (`docs/reference/mediation.md#2-blocks`): finds
//! `<mediated_action_request>` and `<mediated_workflow_request>` blocks in model output and turns
//! their JSON bodies into typed requests.
//!
//! Pure and total: any text parses (never panics); a malformed block is skipped and reported
//! in [`Blocks::skipped`] (the runtime logs it; no event, no envelope warning).
//!
//! ```
//! use agent_mediation::block::parse_blocks;
//!
//! let text = r#"Let me look.
//! <mediated_action_request>
//! {"mediation_version":"v0.8.0","request_id":"req_001","action_type":"read",
//!  "target_tool":"files__read","arguments":{"path":"/x"},"justification":"need it"}
//! </mediated_action_request>"#;
//! let blocks = parse_blocks(text);
//! assert_eq!(blocks.actions.len(), 1);
//! assert_eq!(blocks.actions[0].target_tool, "files__read");
//! ```

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use agent_core::pyfmt;

agent_core::string_enum! {
    /// The three action types a request may name (case-sensitive).
    ActionType {
        Read => "read",
        Lookup => "lookup",
        Inspect => "inspect",
    }
}

/// A single-action request (`<mediated_action_request>`, `docs/mediation.md#single-action`).
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRequest {
    /// Stringified; gate 2 accepts `v0.8.0` and `v0.9.0`.
    pub mediation_version: String,
    /// Stringified.
    pub request_id: String,
    pub action_type: ActionType,
    /// Stringified; a federated normalized name (`server__tool`).
    pub target_tool: String,
    /// `{}` when missing, null or falsy.
    pub arguments: Map<String, Value>,
    /// Stringified.
    pub justification: String,
}

/// A bounded workflow request (`<mediated_workflow_request>`,
/// `docs/mediation.md#bounded-workflow`).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowRequest {
    /// Stringified; the workflow gate accepts only `v0.9.0`.
    pub mediation_version: String,
    /// Stringified.
    pub workflow_id: String,
    /// Stringified; `""` when missing.
    pub justification: String,
    /// Never empty.
    pub steps: Vec<WorkflowStep>,
}

/// One step of a workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowStep {
    pub step_index: StepIndex,
    pub action_type: ActionType,
    pub target_tool: String,
    pub arguments: Map<String, Value>,
    pub justification: String,
}

/// A step's `step_index`: the given integer, or the step's position when absent.
///
/// Deviation (the original crashed the whole run on a non-integer `step_index`; **[fixed]** in
/// `docs/reference/mediation.md#2-blocks`): any other
/// value, `null` included, is kept as [`StepIndex::Malformed`] and the step is rejected with
/// `rejected:malformed_request` while the rest of the workflow goes on.
#[derive(Debug, Clone, PartialEq)]
pub enum StepIndex {
    Index(i64),
    Malformed(Value),
}

impl StepIndex {
    /// The value written in event payloads: the integer, or the raw JSON value.
    pub fn to_json(&self) -> Value {
        match self {
            StepIndex::Index(i) => Value::from(*i),
            StepIndex::Malformed(raw) => raw.clone(),
        }
    }

    /// The step's request id: `wf_step_<step_index>`.
    pub fn request_id(&self) -> String {
        match self {
            StepIndex::Index(i) => format!("wf_step_{i}"),
            StepIndex::Malformed(raw) => format!("wf_step_{}", pyfmt::to_str(raw)),
        }
    }
}

/// Which kind of block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    Action,
    Workflow,
}

/// A block whose tags matched but whose body was not a valid request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedBlock {
    pub kind: BlockKind,
    /// Byte offset of the opening tag in the text.
    pub offset: usize,
    /// Why it was skipped, for the log.
    pub reason: String,
}

/// Everything found in one output, each list in text order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Blocks {
    pub actions: Vec<ActionRequest>,
    pub workflows: Vec<WorkflowRequest>,
    pub skipped: Vec<SkippedBlock>,
}

/// `\s` as Python's `re` understands it in a `str` pattern (Unicode whitespace plus the
/// ASCII information separators U+001C..U+001F, which Rust's `\s` leaves out).
const WS: &str = r"[\s\x1C-\x1F]*";

static ACTION_BLOCK: LazyLock<Option<Regex>> =
    LazyLock::new(|| block_regex("mediated_action_request"));
static WORKFLOW_BLOCK: LazyLock<Option<Regex>> =
    LazyLock::new(|| block_regex("mediated_workflow_request"));

/// `<tag>\s*(\{.*?\})\s*</tag>`, dot matching newlines: non-greedy, leftmost, non-overlapping.
fn block_regex(tag: &str) -> Option<Regex> {
    Regex::new(&format!(r"(?s)<{tag}>{WS}(\{{.*?\}}){WS}</{tag}>")).ok()
}

/// Finds every block in `text` (`docs/reference/mediation.md#2-blocks`). Action and workflow blocks
/// are matched independently, each list in text order.
pub fn parse_blocks(text: &str) -> Blocks {
    let mut blocks = Blocks::default();
    for (offset, body) in bodies(&ACTION_BLOCK, text) {
        match parse_action(body) {
            Ok(action) => blocks.actions.push(action),
            Err(reason) => blocks.skipped.push(SkippedBlock {
                kind: BlockKind::Action,
                offset,
                reason,
            }),
        }
    }
    for (offset, body) in bodies(&WORKFLOW_BLOCK, text) {
        match parse_workflow(body) {
            Ok(workflow) => blocks.workflows.push(workflow),
            Err(reason) => blocks.skipped.push(SkippedBlock {
                kind: BlockKind::Workflow,
                offset,
                reason,
            }),
        }
    }
    blocks
}

fn bodies<'t>(pattern: &LazyLock<Option<Regex>>, text: &'t str) -> Vec<(usize, &'t str)> {
    let Some(regex) = pattern.as_ref() else {
        return Vec::new();
    };
    regex
        .captures_iter(text)
        .filter_map(|caps| {
            let whole = caps.get(0)?;
            let body = caps.get(1)?;
            Some((whole.start(), body.as_str()))
        })
        .collect()
}

/// Parses one `<mediated_action_request>` body.
pub fn parse_action(body: &str) -> Result<ActionRequest, String> {
    let object = parse_object(body)?;
    Ok(ActionRequest {
        mediation_version: required(&object, "mediation_version")?,
        request_id: required(&object, "request_id")?,
        action_type: action_type(&object)?,
        target_tool: required(&object, "target_tool")?,
        arguments: arguments(&object)?,
        justification: required(&object, "justification")?,
    })
}

/// Parses one `<mediated_workflow_request>` body; any malformed step skips the whole block.
pub fn parse_workflow(body: &str) -> Result<WorkflowRequest, String> {
    let object = parse_object(body)?;
    let mediation_version = required(&object, "mediation_version")?;
    let workflow_id = required(&object, "workflow_id")?;
    let raw_steps = match object.get("steps") {
        None => return Err("missing required field 'steps'".to_owned()),
        Some(Value::Array(steps)) if steps.is_empty() => {
            return Err("'steps' is empty".to_owned());
        }
        Some(Value::Array(steps)) => steps,
        Some(_) => return Err("'steps' is not an array".to_owned()),
    };
    let justification = object
        .get("justification")
        .map(pyfmt::to_str)
        .unwrap_or_default();
    let mut steps = Vec::with_capacity(raw_steps.len());
    for (position, raw) in raw_steps.iter().enumerate() {
        let step = parse_step(position, raw).map_err(|e| format!("step {position}: {e}"))?;
        steps.push(step);
    }
    Ok(WorkflowRequest {
        mediation_version,
        workflow_id,
        justification,
        steps,
    })
}

fn parse_step(position: usize, raw: &Value) -> Result<WorkflowStep, String> {
    let Value::Object(step) = raw else {
        return Err("not a JSON object".to_owned());
    };
    let step_index = match step.get("step_index") {
        None => StepIndex::Index(i64::try_from(position).unwrap_or(i64::MAX)),
        Some(value) => match value.as_i64() {
            Some(i) => StepIndex::Index(i),
            None => StepIndex::Malformed(value.clone()),
        },
    };
    Ok(WorkflowStep {
        step_index,
        action_type: action_type(step)?,
        target_tool: required(step, "target_tool")?,
        arguments: arguments(step)?,
        justification: required(step, "justification")?,
    })
}

fn parse_object(body: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err("the body is not a JSON object".to_owned()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

/// A required field, present (even as `null`) and stringified Python-style.
fn required(object: &Map<String, Value>, key: &str) -> Result<String, String> {
    object
        .get(key)
        .map(pyfmt::to_str)
        .ok_or_else(|| format!("missing required field '{key}'"))
}

fn action_type(object: &Map<String, Value>) -> Result<ActionType, String> {
    match object.get("action_type") {
        None => Err("missing required field 'action_type'".to_owned()),
        Some(value) => value.as_str().and_then(ActionType::parse).ok_or_else(|| {
            format!(
                "action_type {} is not one of read, lookup, inspect",
                pyfmt::to_str(value)
            )
        }),
    }
}

/// `arguments`: an object is used as is; a missing or falsy value (`null`, `false`, `0`, `""`,
/// `[]`) means `{}`; any other value makes the request malformed.
fn arguments(object: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    match object.get("arguments") {
        None => Ok(Map::new()),
        Some(Value::Object(arguments)) => Ok(arguments.clone()),
        Some(value) if falsy(value) => Ok(Map::new()),
        Some(value) => Err(format!(
            "arguments {} is not a JSON object",
            pyfmt::repr(value)
        )),
    }
}

/// Python truthiness of a JSON value.
fn falsy(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn action_block(body: &str) -> String {
        format!("<mediated_action_request>{body}</mediated_action_request>")
    }

    const VALID: &str = r#"{"mediation_version":"v0.8.0","request_id":"req_001","action_type":"read","target_tool":"s__t","arguments":{"path":"/x"},"justification":"why"}"#;

    #[test]
    fn a_valid_action_block_parses() {
        let blocks = parse_blocks(&format!("before\n{}\nafter", action_block(VALID)));
        assert_eq!(
            blocks.actions,
            [ActionRequest {
                mediation_version: "v0.8.0".into(),
                request_id: "req_001".into(),
                action_type: ActionType::Read,
                target_tool: "s__t".into(),
                arguments: json!({"path": "/x"}).as_object().cloned().unwrap(),
                justification: "why".into(),
            }]
        );
        assert!(blocks.skipped.is_empty());
    }

    #[test]
    fn whitespace_around_the_body_is_allowed_and_nested_objects_work() {
        let body = r#"{"mediation_version":"v0.8.0","request_id":"r","action_type":"lookup","target_tool":"t","arguments":{"q":{"deep":{"x":[1,{"y":2}]}}},"justification":"j"}"#;
        let text = format!("<mediated_action_request>\n\t  {body}\n\n</mediated_action_request>");
        let blocks = parse_blocks(&text);
        assert_eq!(blocks.actions.len(), 1);
        assert_eq!(
            Value::Object(blocks.actions[0].arguments.clone()),
            json!({"q": {"deep": {"x": [1, {"y": 2}]}}})
        );
    }

    #[test]
    fn fields_are_stringified_python_style() {
        let body = r#"{"mediation_version":0.8,"request_id":7,"action_type":"inspect","target_tool":["a"],"justification":null}"#;
        let blocks = parse_blocks(&action_block(body));
        let a = &blocks.actions[0];
        assert_eq!(a.mediation_version, "0.8");
        assert_eq!(a.request_id, "7");
        assert_eq!(a.target_tool, "['a']");
        assert_eq!(a.justification, "None");
        assert!(a.arguments.is_empty());
    }

    #[test]
    fn falsy_arguments_mean_an_empty_object_and_truthy_non_objects_skip() {
        for falsy in ["null", "[]", "\"\"", "0", "false", "{}", "0.0"] {
            let body = VALID.replace(r#"{"path":"/x"}"#, falsy);
            let blocks = parse_blocks(&action_block(&body));
            assert_eq!(blocks.actions.len(), 1, "{falsy}");
            assert!(blocks.actions[0].arguments.is_empty());
        }
        for truthy in ["[1]", "\"x\"", "1", "true"] {
            let body = VALID.replace(r#"{"path":"/x"}"#, truthy);
            let blocks = parse_blocks(&action_block(&body));
            assert!(blocks.actions.is_empty(), "{truthy}");
            assert_eq!(blocks.skipped.len(), 1);
        }
    }

    #[test]
    fn malformed_action_blocks_are_skipped() {
        let cases = [
            "{not json}".to_owned(),
            VALID.replace("\"justification\":\"why\"", "\"other\":1"),
            VALID.replace("\"read\"", "\"delete\""),
            VALID.replace("\"read\"", "\"READ\""),
            VALID.replace("\"read\"", "1"),
            VALID.replace("\"request_id\":\"req_001\",", ""),
            VALID.replace("\"target_tool\":\"s__t\",", ""),
            VALID.replace("\"mediation_version\":\"v0.8.0\",", ""),
        ];
        for body in &cases {
            let blocks = parse_blocks(&action_block(body));
            assert!(blocks.actions.is_empty(), "{body}");
            assert_eq!(blocks.skipped.len(), 1, "{body}");
            assert_eq!(blocks.skipped[0].kind, BlockKind::Action);
        }
        // Bodies that are not `{...}` are not matched at all.
        for body in ["[1, 2]", "\"text\"", "x {}", "{} x"] {
            assert_eq!(
                parse_blocks(&action_block(body)),
                Blocks::default(),
                "{body}"
            );
        }
    }

    #[test]
    fn tags_are_case_sensitive_and_must_close() {
        assert_eq!(
            parse_blocks(&format!(
                "<Mediated_Action_Request>{VALID}</Mediated_Action_Request>"
            )),
            Blocks::default()
        );
        assert_eq!(
            parse_blocks(&format!("<mediated_action_request>{VALID}")),
            Blocks::default()
        );
    }

    #[test]
    fn several_blocks_come_in_text_order() {
        let second = VALID.replace("req_001", "req_002");
        let text = format!(
            "{}\nmiddle {}\n{}",
            action_block(VALID),
            action_block("{broken}"),
            action_block(&second)
        );
        let blocks = parse_blocks(&text);
        let ids: Vec<&str> = blocks
            .actions
            .iter()
            .map(|a| a.request_id.as_str())
            .collect();
        assert_eq!(ids, ["req_001", "req_002"]);
        assert_eq!(blocks.skipped.len(), 1);
    }

    /// The non-greedy body runs to the first `}` that precedes a closing tag: a block whose
    /// body lacks its final `}` extends into the next block and both are lost.
    #[test]
    fn a_block_without_its_closing_brace_swallows_the_next_block() {
        let text = format!(
            "<mediated_action_request>{{oops</mediated_action_request> {}",
            action_block(VALID)
        );
        let blocks = parse_blocks(&text);
        assert!(blocks.actions.is_empty());
        assert_eq!(blocks.skipped.len(), 1);
    }

    const WF: &str = r#"{"mediation_version":"v0.9.0","workflow_id":"wf_001","justification":"why","steps":[{"step_index":0,"action_type":"read","target_tool":"s__a","arguments":{},"justification":"a"},{"action_type":"lookup","target_tool":"s__b","justification":"b"}]}"#;

    fn workflow_block(body: &str) -> String {
        format!("<mediated_workflow_request>\n{body}\n</mediated_workflow_request>")
    }

    #[test]
    fn a_valid_workflow_parses_with_default_step_indexes() {
        let blocks = parse_blocks(&workflow_block(WF));
        let wf = &blocks.workflows[0];
        assert_eq!(wf.workflow_id, "wf_001");
        assert_eq!(wf.justification, "why");
        assert_eq!(wf.steps.len(), 2);
        assert_eq!(wf.steps[0].step_index, StepIndex::Index(0));
        assert_eq!(wf.steps[1].step_index, StepIndex::Index(1));
        assert_eq!(wf.steps[1].action_type, ActionType::Lookup);
        assert!(blocks.actions.is_empty());
    }

    #[test]
    fn workflow_justification_defaults_to_empty() {
        let body = WF.replace("\"justification\":\"why\",", "");
        let blocks = parse_blocks(&workflow_block(&body));
        assert_eq!(blocks.workflows[0].justification, "");
    }

    #[test]
    fn malformed_workflows_are_skipped_whole() {
        let cases = [
            WF.replace(
                r#""steps":[{"step_index":0,"action_type":"read","target_tool":"s__a","arguments":{},"justification":"a"},{"action_type":"lookup","target_tool":"s__b","justification":"b"}]"#,
                r#""steps":[]"#,
            ),
            WF.replace(
                r#""steps":[{"step_index":0,"action_type":"read","target_tool":"s__a","arguments":{},"justification":"a"},{"action_type":"lookup","target_tool":"s__b","justification":"b"}]"#,
                r#""steps":{"a":1}"#,
            ),
            WF.replace("\"workflow_id\":\"wf_001\",", ""),
            WF.replace("\"lookup\"", "\"write\""),
            WF.replace(",\"justification\":\"b\"", ""),
            WF.replace("{\"action_type\":\"lookup\"", "7,{\"action_type\":\"lookup\""),
            WF.replace("\"arguments\":{}", "\"arguments\":[1]"),
        ];
        for body in &cases {
            let blocks = parse_blocks(&workflow_block(body));
            assert!(blocks.workflows.is_empty(), "{body}");
            assert_eq!(blocks.skipped.len(), 1, "{body}");
            assert_eq!(blocks.skipped[0].kind, BlockKind::Workflow);
        }
    }

    #[test]
    fn a_malformed_step_index_is_kept_for_rejection() {
        for (raw, id) in [
            ("\"x\"", "wf_step_x"),
            ("null", "wf_step_None"),
            ("1.5", "wf_step_1.5"),
        ] {
            let body = WF.replace("\"step_index\":0", &format!("\"step_index\":{raw}"));
            let blocks = parse_blocks(&workflow_block(&body));
            let step = &blocks.workflows[0].steps[0];
            assert!(matches!(step.step_index, StepIndex::Malformed(_)), "{raw}");
            assert_eq!(step.step_index.request_id(), id);
        }
    }

    #[test]
    fn action_and_workflow_blocks_are_found_independently() {
        let text = format!(
            "{}{}{}",
            workflow_block(WF),
            action_block(VALID),
            workflow_block(WF)
        );
        let blocks = parse_blocks(&text);
        assert_eq!(blocks.actions.len(), 1);
        assert_eq!(blocks.workflows.len(), 2);
    }
}
