//! The handler layer under a property campaign (#12): every tool's arguments, resource URIs and
//! cursors, driven through [`AgentServer::call`] and the resources module over a real SQLite store
//! in a temporary directory and a fake backend. Nothing may panic or hang, every answer has the
//! contract's shape (`docs/reference/envelope.md#1-tool-results`,
//! `docs/reference/tools.md#2-published-tools`), and no session is left half-written (`running`, or
//! holding a lock) after a call returns.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent_core::engine::EngineConfig;
use agent_core::error::ErrorCode;
use agent_core::evidence::Evidence;
use agent_core::settings::MediationSettings;
use agent_core::{
    BackendOutput, BackendRequest, Capabilities, Engine, ExecContext, ExecutionBackend,
    ExecutionError, PolicyViolation, SessionStatus, SessionStore, TaskStore, WorkspacePolicy,
};
use agent_mcp::status::{
    CapabilityFlags, ContinuationSettings, MediationStatus, RestrictionStatus,
};
use agent_mcp::validate::INPUT_VALIDATION_PREFIX;
use agent_mcp::{AgentServer, RuntimeStatus, resources};
use agent_store::{SqliteStore, StoreConfig};
use async_trait::async_trait;
use proptest::prelude::*;
use rmcp::model::{CallToolResult, JsonObject};
use serde_json::{Value, json};

/// Answers every execution with a short text.
struct EchoBackend;

#[async_trait]
impl ExecutionBackend for EchoBackend {
    fn name(&self) -> &'static str {
        "api"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    async fn execute(
        &self,
        request: BackendRequest,
        _ctx: &ExecContext,
    ) -> Result<BackendOutput, ExecutionError> {
        Ok(BackendOutput {
            output_text: format!("done: {} chars", request.task.chars().count()),
            turn_count: 1,
            stop_reason: Some("end_turn".to_owned()),
            ..BackendOutput::default()
        })
    }
}

/// One allowed directory; evidence is never read (not under test here).
struct OneDir(PathBuf);

impl WorkspacePolicy for OneDir {
    fn cwd(&self) -> &Path {
        &self.0
    }

    fn resolve_working_directory(
        &self,
        requested: Option<&str>,
    ) -> Result<PathBuf, PolicyViolation> {
        match requested {
            None => Ok(self.0.clone()),
            Some(dir) if Path::new(dir) == self.0 => Ok(self.0.clone()),
            Some(dir) => Err(PolicyViolation::new(
                ErrorCode::PolicyDenied,
                format!("Working directory not allowed: {dir}"),
            )),
        }
    }

    fn check_attachment(&self, path: &str) -> Result<PathBuf, PolicyViolation> {
        Err(PolicyViolation::new(
            ErrorCode::PolicyDenied,
            format!("Attachment not allowed: {path}"),
        ))
    }

    fn path_exists(&self, _path: &str) -> bool {
        false
    }

    fn read_evidence(
        &self,
        paths: &[String],
        _budget: usize,
    ) -> Result<(Vec<Evidence>, Vec<String>), PolicyViolation> {
        match paths.first() {
            None => Ok((Vec::new(), Vec::new())),
            Some(path) => Err(PolicyViolation::new(
                ErrorCode::PolicyDenied,
                format!("Evidence not allowed: {path}"),
            )),
        }
    }
}

fn status() -> RuntimeStatus {
    RuntimeStatus {
        version: agent_core::VERSION.to_owned(),
        operator_profile_preset: None,
        backend: "api".to_owned(),
        transport: "stdio".to_owned(),
        model: "test-model".to_owned(),
        federation_enabled: false,
        federation_active: false,
        capability_flags: CapabilityFlags {
            limited_tool_forwarding_enabled: false,
            execution_mediation_enabled: false,
            federation_enabled: false,
        },
        continuation_settings: ContinuationSettings {
            max_continuation_turns: 5,
            max_continuation_warnings: 5,
            max_continuation_forwarding_events: 5,
            include_verification_context: true,
            include_tool_downgrade_context: true,
        },
        mediation: MediationStatus(MediationSettings {
            enabled: false,
            max_actions_per_turn: 1,
            allowed_action_types: Vec::new(),
            include_results_in_continuation: false,
            max_workflow_steps: 1,
            allowed_tools: Vec::new(),
            denied_tools: Vec::new(),
            max_session_approvals: 1,
            include_rejected_in_continuation: false,
            policy_profile: "default".to_owned(),
        }),
        preserved_limitations: Vec::new(),
        resolved_at: String::new(),
        mode: "standard".to_owned(),
        restriction: RestrictionStatus::default(),
        session_store: "sqlite".to_owned(),
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    store: Arc<SqliteStore>,
    engine: Arc<Engine>,
    server: AgentServer,
    /// A finished session to continue, verify, get and cancel.
    session_id: String,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let store = runtime
            .block_on(SqliteStore::open(StoreConfig {
                db_path: dir.path().join("sessions.db"),
                artifact_dir: dir.path().join("artifacts"),
                max_artifact_bytes: 1 << 20,
            }))
            .unwrap();
        let store = Arc::new(store);
        let engine = Arc::new(Engine::new(
            Arc::clone(&store) as Arc<dyn SessionStore>,
            Arc::new(EchoBackend),
            Arc::new(OneDir(work)),
            EngineConfig::default(),
        ));
        let server = AgentServer::standard(
            Arc::clone(&engine),
            Arc::clone(&store) as Arc<dyn TaskStore>,
            status(),
        );
        let mut args = JsonObject::new();
        args.insert("task".to_owned(), json!("seed"));
        let seeded = runtime.block_on(server.call("agent_run_task", args, ExecContext::default()));
        let session_id = seeded.structured_content.unwrap()["session_id"]
            .as_str()
            .unwrap()
            .to_owned();
        Self {
            _dir: dir,
            runtime,
            store,
            engine,
            server,
            session_id,
        }
    }

    fn call(&self, tool: &str, arguments: JsonObject) -> CallToolResult {
        let call = self.server.call(tool, arguments, ExecContext::default());
        self.runtime.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(60), call)
                .await
                .expect("the tool call answers")
        })
    }

    /// No session is `running` or locked once every call has returned. A call touches at
    /// most its own session and the seeded one, which are then the most recently updated:
    /// the lock check looks at those.
    fn assert_nothing_half_written(&self) {
        let running = self
            .runtime
            .block_on(self.store.list_sessions(10, Some(SessionStatus::Running)))
            .unwrap();
        assert_eq!(running, Vec::new(), "a session was left running");
        let locked: Vec<String> = self
            .runtime
            .block_on(self.store.list_sessions(3, None))
            .unwrap()
            .into_iter()
            .filter(|item| {
                let record = self
                    .runtime
                    .block_on(self.store.get_session(&item.session_id))
                    .unwrap()
                    .unwrap();
                record.locked_by.is_some()
            })
            .map(|item| item.session_id)
            .collect();
        assert_eq!(locked, Vec::<String>::new(), "a session kept its lock");
    }
}

fn harness() -> &'static Harness {
    static HARNESS: std::sync::OnceLock<Harness> = std::sync::OnceLock::new();
    HARNESS.get_or_init(Harness::new)
}

/// The tool results of `docs/reference/tools.md`: a schema-layer rejection (`isError: true`,
/// one text naming the validation error), or one text item equal to `structuredContent`,
/// which is an error result, an envelope, or the tool's own object.
fn assert_contract_shape(tool: &str, result: &CallToolResult) {
    assert_eq!(result.content.len(), 1, "{tool}: one content item");
    let text = &result.content[0]
        .as_text()
        .expect("the content item is text")
        .text;
    if result.is_error == Some(true) {
        assert!(text.starts_with(INPUT_VALIDATION_PREFIX), "{tool}: {text}");
        assert!(result.structured_content.is_none());
        return;
    }
    let value = result
        .structured_content
        .as_ref()
        .expect("structuredContent");
    assert_eq!(&serde_json::from_str::<Value>(text).unwrap(), value);
    if let Some(error) = value.get("error") {
        assert!(error["code"].is_string(), "{tool}: {value}");
        assert!(error["message"].is_string(), "{tool}: {value}");
        return;
    }
    match tool {
        "agent_run_task"
        | "agent_continue_session"
        | "agent_verify_task"
        | "agent_wait_session"
        | "agent_fork_session" => {
            for key in ["ok", "status", "workflow", "profile", "summary"] {
                assert!(value.get(key).is_some(), "{tool}: no {key}: {value}");
            }
            assert!(value["ok"].is_boolean());
            assert!(value["session_id"].is_string());
            assert!(value["result"].is_object());
            assert!(value["artifacts"].is_array());
            assert!(value["warnings"].is_array());
            assert!(value["errors"].is_array());
            if value["status"] == "running" {
                // Work going on (`wait_seconds`, or a wait that timed out): no error, and the
                // tool that collects it named.
                assert_eq!(value["ok"], false, "{tool}: {value}");
                assert_eq!(value["errors"], json!([]), "{tool}: {value}");
                assert!(
                    value["warnings"][0]
                        .as_str()
                        .is_some_and(|w| w.contains("agent_wait_session")),
                    "{tool}: {value}"
                );
            } else if value["ok"] == false {
                let errors = value["errors"].as_array().unwrap();
                assert!(!errors.is_empty(), "{tool}: a failure names an error");
                for e in errors {
                    assert!(e["code"].is_string() && e["message"].is_string(), "{e}");
                }
            }
        }
        "agent_get_session" => assert!(value["session_id"].is_string(), "{value}"),
        "agent_list_sessions" => assert!(value["sessions"].is_array(), "{value}"),
        "agent_cancel_session" => assert!(value.is_object(), "{value}"),
        "agent_get_runtime_status" => assert!(value["version"].is_string(), "{value}"),
        other => panic!("unexpected tool {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn config(cost: u32) -> ProptestConfig {
    ProptestConfig::with_cases(agent_testkit::peers::proptest_cases(cost))
}

fn odd_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        Just(String::new()),
        Just("\u{0}\u{feff}\u{202e}\u{fffd}\u{10ffff}".to_owned()),
        Just("../../../../etc/passwd".to_owned()),
        Just("sess_".to_owned()),
        (1usize..70_000).prop_map(|n| "é".repeat(n)),
        prop::sample::select(vec![
            "general",
            "verification",
            "research",
            "fail",
            "pass",
            "running",
            "completed",
        ])
        .prop_map(str::to_owned),
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop::sample::select(vec![
            0i64,
            -1,
            1,
            i64::from(u32::MAX),
            i64::from(u32::MAX) + 1,
            i64::MIN,
            i64::MAX
        ])
        .prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(vec![0.5, -0.0, 1e300, -1e300, f64::MIN_POSITIVE])
            .prop_map(|f| json!(f)),
        odd_string().prop_map(Value::from),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::btree_map(odd_string(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A deep nest or a huge array: what a hostile client sends to exhaust the server. Nesting
/// stops at 127 levels: serde_json refuses deeper input (its recursion limit, 128) before rmcp
/// hands arguments to the handler (`wire_arguments_nest_at_most_128_levels`).
fn hostile() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0usize..127).prop_map(|depth| {
            let mut v = json!("x");
            for _ in 0..depth {
                v = json!([v]);
            }
            v
        }),
        (0usize..20_000).prop_map(|n| Value::from(vec![Value::from("a"); n])),
        (0usize..5_000).prop_map(|n| Value::from(vec![Value::from(u64::MAX); n])),
    ]
}

/// Arguments near the tool's schema: its own property names with arbitrary values (or a
/// valid session id), plus stray keys.
fn arguments(properties: Vec<String>, session_id: String) -> impl Strategy<Value = JsonObject> {
    let key = prop_oneof![
        4 => prop::sample::select(properties),
        1 => odd_string(),
    ];
    let value = prop_oneof![
        4 => arb_json(),
        1 => hostile(),
        1 => Just(Value::from(session_id)),
    ];
    prop::collection::btree_map(key, value, 0..6).prop_map(|m| m.into_iter().collect())
}

fn properties_of(tool: &str) -> Vec<String> {
    let definition = harness()
        .server
        .tools()
        .iter()
        .find(|t| t.name == tool)
        .unwrap_or_else(|| panic!("{tool} is published"));
    let mut names: Vec<String> = definition
        .input_schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    names.push("session_id".to_owned());
    names
}

fn tool_names() -> Vec<String> {
    let mut names: Vec<String> = harness()
        .server
        .tools()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    names.push("agent_unknown_tool".to_owned());
    names
}

fn any_call() -> impl Strategy<Value = (String, JsonObject)> {
    let session = harness().session_id.clone();
    prop::sample::select(tool_names()).prop_flat_map(move |tool| {
        let props = properties_of(if tool == "agent_unknown_tool" {
            "agent_run_task"
        } else {
            &tool
        });
        (Just(tool), arguments(props, session.clone()))
    })
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn every_tool_answers_any_arguments_in_the_contract_s_shape((tool, args) in any_call()) {
        let h = harness();
        let result = h.call(&tool, args);
        if tool == "agent_unknown_tool" {
            let value = result.structured_content.clone().unwrap();
            prop_assert_eq!(&value["error"]["code"], "tool_not_admitted");
        } else {
            assert_contract_shape(&tool, &result);
        }
        // A call that answered `running` left its work going on: collect it first.
        let answered = result.structured_content.unwrap_or_default();
        if answered["status"] == "running" {
            let mut wait = JsonObject::new();
            wait.insert("session_id".to_owned(), answered["session_id"].clone());
            wait.insert("timeout_seconds".to_owned(), json!(60));
            let collected = h.call("agent_wait_session", wait).structured_content.unwrap();
            prop_assert_ne!(&collected["status"], "running", "{}", collected);
        }
        h.assert_nothing_half_written();
    }
}

proptest! {
    #![proptest_config(config(1))]

    #[test]
    fn resource_uris_answer_or_are_not_found(
        scheme in prop::sample::select(vec!["session://", "artifact://", "file://", "", "session:/"]),
        middle in prop_oneof![odd_string(), Just(harness().session_id.clone())],
        suffix in prop::sample::select(vec!["", "/events", "/", "/art_x", "/events/x"]),
    ) {
        let h = harness();
        let uri = format!("{scheme}{middle}{suffix}");
        let read = h.runtime.block_on(resources::read(&h.engine, &uri));
        match read {
            Ok(result) => {
                prop_assert!(uri.starts_with("session://") || uri.starts_with("artifact://"));
                prop_assert_eq!(result.contents.len(), 1);
            }
            Err(error) => {
                prop_assert_eq!(error.code, rmcp::model::ErrorCode::RESOURCE_NOT_FOUND, "{}", uri);
            }
        }
    }

    #[test]
    fn cursors_parse_or_are_invalid_params(cursor in prop_oneof![
        any::<String>(),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u32>().prop_map(|n| n.to_string()),
        "[0-9]{1,400}",
    ]) {
        match resources::parse_cursor(&cursor) {
            Ok(offset) => {
                // Leading zeros are accepted; the value is the cursor's.
                let digits = cursor.trim_start_matches('0');
                prop_assert_eq!(offset.to_string(), if digits.is_empty() { "0" } else { digits });
                let page = h_page(offset);
                prop_assert!(page.0.len() <= resources::PAGE_SIZE as usize);
                if let Some(next) = resources::next_cursor(offset, page.1) {
                    prop_assert!(resources::parse_cursor(&next).is_ok());
                }
            }
            Err(error) => {
                prop_assert_eq!(error.code, rmcp::model::ErrorCode::INVALID_PARAMS);
                prop_assert!(error.message.len() < 400);
            }
        }
    }
}

fn h_page(offset: u32) -> (Vec<agent_core::engine::SessionListEntry>, bool) {
    let h = harness();
    h.runtime
        .block_on(h.engine.sessions_page(offset, resources::PAGE_SIZE))
        .unwrap()
}

/// Arguments reach the handler parsed by serde_json, whose recursion limit (128) is what
/// bounds nesting: the handler layer never sees a deeper value.
#[test]
fn wire_arguments_nest_at_most_128_levels() {
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    assert!(serde_json::from_str::<Value>(&nested(127)).is_ok());
    assert!(serde_json::from_str::<Value>(&nested(129)).is_err());
    let request = format!(
        r#"{{"name":"agent_run_task","arguments":{{"task":{}}}}}"#,
        nested(200)
    );
    assert!(serde_json::from_str::<rmcp::model::CallToolRequestParams>(&request).is_err());
}
