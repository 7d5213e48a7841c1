use super::*;

use tempfile::TempDir;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A temporary CWD and its canonical path.
fn temp_cwd() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let canonical = std::fs::canonicalize(dir.path()).unwrap();
    (dir, canonical)
}

fn config(pairs: &[(&str, &str)], cwd: &Path) -> Config {
    from_vars(&env(pairs), cwd, &CliOverrides::default()).unwrap()
}

fn problems_with(pairs: &[(&str, &str)], cwd: &Path, overrides: &CliOverrides) -> Vec<String> {
    from_vars(&env(pairs), cwd, overrides).unwrap_err().0
}

fn problems(pairs: &[(&str, &str)], cwd: &Path) -> Vec<String> {
    problems_with(pairs, cwd, &CliOverrides::default())
}

fn expected_defaults(cwd: &Path) -> Config {
    let state_dir = cwd.join(".state");
    Config {
        mode: RuntimeMode::Standard,
        transport: Transport::Stdio,
        host: "127.0.0.1".into(),
        port: 8000,
        cwd: cwd.to_path_buf(),
        db_path: state_dir.join("claude-agent-mcp.db"),
        artifact_dir: state_dir.join("artifacts"),
        database: Database::Sqlite,
        state_dir,
        log_level: LogLevel::Info,
        model: "claude-sonnet-4-6".into(),
        lock_ttl_secs: 300,
        allowed_dirs: vec![cwd.to_path_buf()],
        max_artifact_bytes: 10_485_760,
        operator_profile: None,
        backend: BackendKind::Api,
        anthropic_api_key: Secret::default(),
        anthropic_base_url: "https://api.anthropic.com".into(),
        api_max_retries: 2,
        api_timeout_secs: 600,
        max_evidence_bytes: 262_144,
        builtin_tools: true,
        claude_code_cli_path: None,
        claude_code_timeout_secs: 300,
        limited_tool_forwarding: false,
        claude_code_mode: ClaudeCodeMode::Native,
        claude_code_env_passthrough: vec![],
        claude_code_setting_sources: None,
        continuation: ContinuationSettings {
            max_continuation_turns: 5,
            max_continuation_warnings: 3,
            max_continuation_forwarding_events: 3,
            include_verification_context: true,
            include_tool_downgrade_context: true,
        },
        mediation: MediationSettings {
            enabled: false,
            max_actions_per_turn: 1,
            allowed_action_types: vec![],
            include_results_in_continuation: false,
            max_workflow_steps: 1,
            allowed_tools: vec![],
            denied_tools: vec![],
            max_session_approvals: 100,
            include_rejected_in_continuation: false,
            policy_profile: "conservative".into(),
        },
        federation_enabled: false,
        federation_config: None,
        allowed_origins: vec![],
        http_bearer_token: None,
        http_header_timeout_secs: 10,
        http_max_connections: 256,
        database_max_connections: 8,
        database_listen: true,
        metrics_addr: None,
        spend: agent_core::spend::SpendPolicy {
            default_model: "claude-sonnet-4-6".into(),
            ..Default::default()
        },
        telemetry: telemetry::Telemetry::default(),
        env_file: None,
    }
}

#[test]
fn defaults_when_nothing_is_set() {
    let (_dir, cwd) = temp_cwd();
    let config = config(&[], &cwd);
    assert_eq!(config, expected_defaults(&cwd));
    assert_eq!(config.http_port(), Some(8000));
    assert!(!config.operator_profile_is_known());
}

#[test]
fn every_value_is_read() {
    let (_dir, cwd) = temp_cwd();
    let config = config(
        &[
            ("ANTHROPIC_API_KEY", "sk-test"),
            ("ANTHROPIC_BASE_URL", " http://127.0.0.1:9999 "),
            ("CLAUDE_AGENT_MCP_MODE", " APNTALK_Verification "),
            ("CLAUDE_AGENT_MCP_TRANSPORT", "stdio"),
            ("CLAUDE_AGENT_MCP_HOST", " 127.0.0.2 "),
            ("CLAUDE_AGENT_MCP_PORT", " 9000 "),
            ("CLAUDE_AGENT_MCP_STATE_DIR", "st"),
            ("CLAUDE_AGENT_MCP_DB_PATH", "/tmp/x/../db.sqlite"),
            ("CLAUDE_AGENT_MCP_ARTIFACT_DIR", "./arts/"),
            ("CLAUDE_AGENT_MCP_LOG_LEVEL", "debug"),
            ("CLAUDE_AGENT_MCP_MODEL", " claude-opus "),
            ("CLAUDE_AGENT_MCP_LOCK_TTL", "-5"),
            ("CLAUDE_AGENT_MCP_ALLOWED_DIRS", " a , ,/srv/b ,"),
            ("CLAUDE_AGENT_MCP_MAX_ARTIFACT_BYTES", "0"),
            ("CLAUDE_AGENT_MCP_EXECUTION_BACKEND", " Claude_Code"),
            ("CLAUDE_AGENT_MCP_API_MAX_RETRIES", "7"),
            ("CLAUDE_AGENT_MCP_API_TIMEOUT", "30"),
            ("CLAUDE_AGENT_MCP_BUILTIN_TOOLS", "false"),
            ("CLAUDE_AGENT_MCP_CLAUDE_CODE_CLI_PATH", " /opt/claude "),
            ("CLAUDE_AGENT_MCP_CLAUDE_CODE_TIMEOUT", "42"),
            (
                "CLAUDE_AGENT_MCP_CLAUDE_CODE_LIMITED_TOOL_FORWARDING",
                " YES ",
            ),
            (
                "CLAUDE_AGENT_MCP_CLAUDE_CODE_ALLOWED_MEDIATED_ACTION_TYPES",
                "read, lookup",
            ),
            ("CLAUDE_AGENT_MCP_CLAUDE_CODE_ALLOWED_MEDIATED_TOOLS", "t1"),
            (
                "CLAUDE_AGENT_MCP_CLAUDE_CODE_DENIED_MEDIATED_TOOLS",
                "t2,t3",
            ),
            ("CLAUDE_AGENT_MCP_FEDERATION_ENABLED", "1"),
            ("CLAUDE_AGENT_MCP_FEDERATION_CONFIG", "fed.json"),
            (
                "CLAUDE_AGENT_MCP_ALLOWED_ORIGINS",
                "https://a.example, http://b.example",
            ),
            ("CLAUDE_AGENT_MCP_HTTP_BEARER_TOKEN", " tok "),
        ],
        &cwd,
    );
    assert_eq!(config.mode, RuntimeMode::ApntalkVerification);
    assert_eq!(config.host, "127.0.0.2");
    assert_eq!(config.port, 9000);
    assert_eq!(config.state_dir, cwd.join("st"));
    assert_eq!(config.db_path, PathBuf::from("/tmp/db.sqlite"));
    assert_eq!(config.artifact_dir, cwd.join("arts"));
    assert_eq!(config.log_level, LogLevel::Debug);
    assert_eq!(config.model, " claude-opus ");
    assert_eq!(config.lock_ttl_secs, -5);
    assert_eq!(
        config.allowed_dirs,
        vec![cwd.join("a"), PathBuf::from("/srv/b")]
    );
    assert_eq!(config.max_artifact_bytes, 0);
    assert_eq!(config.backend, BackendKind::ClaudeCode);
    assert_eq!(config.anthropic_api_key.expose(), "sk-test");
    assert_eq!(config.anthropic_base_url, "http://127.0.0.1:9999");
    assert_eq!(config.api_max_retries, 7);
    assert_eq!(config.api_timeout_secs, 30);
    assert!(!config.builtin_tools);
    assert_eq!(
        config.claude_code_cli_path,
        Some(PathBuf::from("/opt/claude"))
    );
    assert_eq!(config.claude_code_timeout_secs, 42);
    assert!(config.limited_tool_forwarding);
    assert_eq!(
        config.mediation.allowed_action_types,
        vec!["read", "lookup"]
    );
    assert_eq!(config.mediation.allowed_tools, vec!["t1"]);
    assert_eq!(config.mediation.denied_tools, vec!["t2", "t3"]);
    assert!(config.federation_enabled);
    assert_eq!(config.federation_config, Some(cwd.join("fed.json")));
    assert_eq!(
        config.allowed_origins,
        vec!["https://a.example", "http://b.example"]
    );
    assert_eq!(
        config.http_bearer_token.as_ref().map(Secret::expose),
        Some("tok")
    );
    assert_eq!(config.api_key_problem(), None);
}

#[test]
fn bools_follow_the_python_convention() {
    for (value, expected) in [
        ("true", true),
        (" TRUE ", true),
        ("1", true),
        ("Yes", true),
        ("on", false),
        ("", false),
    ] {
        assert_eq!(parse_bool(value), expected, "{value:?}");
    }
}

#[test]
fn invalid_choices_are_reported_with_their_choices() {
    let (_dir, cwd) = temp_cwd();
    assert_eq!(
        problems(&[("CLAUDE_AGENT_MCP_MODE", " Bogus ")], &cwd),
        vec![
            "CLAUDE_AGENT_MCP_MODE='bogus' is not valid. Choose from: ['apntalk_verification', 'standard']"
        ]
    );
    assert_eq!(
        problems(&[("CLAUDE_AGENT_MCP_TRANSPORT", "http")], &cwd),
        vec![
            "CLAUDE_AGENT_MCP_TRANSPORT='http' is not valid. Choose from: ['stdio', 'streamable-http']"
        ]
    );
    assert_eq!(
        problems(&[("CLAUDE_AGENT_MCP_EXECUTION_BACKEND", "sdk")], &cwd),
        vec![
            "CLAUDE_AGENT_MCP_EXECUTION_BACKEND='sdk' is not valid. Choose from: ['api', 'claude_code']"
        ]
    );
    assert_eq!(
        problems(&[("CLAUDE_AGENT_MCP_LOG_LEVEL", "verbose")], &cwd),
        vec!["CLAUDE_AGENT_MCP_LOG_LEVEL='VERBOSE' is not a valid log level"]
    );
    // Upper-cased but not trimmed.
    assert_eq!(
        problems(&[("CLAUDE_AGENT_MCP_LOG_LEVEL", " info")], &cwd),
        vec!["CLAUDE_AGENT_MCP_LOG_LEVEL=' INFO' is not a valid log level"]
    );
    // An empty value is set, so it is validated (not defaulted).
    assert_eq!(
        problems(&[("CLAUDE_AGENT_MCP_MODE", "")], &cwd),
        vec![
            "CLAUDE_AGENT_MCP_MODE='' is not valid. Choose from: ['apntalk_verification', 'standard']"
        ]
    );
}

#[test]
fn streamable_http_checks_host_and_port() {
    let (_dir, cwd) = temp_cwd();
    let http = ("CLAUDE_AGENT_MCP_TRANSPORT", "streamable-http");
    assert_eq!(
        problems(
            &[
                http,
                ("CLAUDE_AGENT_MCP_HOST", "  "),
                ("CLAUDE_AGENT_MCP_PORT", "0")
            ],
            &cwd
        ),
        vec![
            "CLAUDE_AGENT_MCP_HOST must not be empty for streamable-http transport",
            "CLAUDE_AGENT_MCP_PORT=0 is out of range (1–65535)",
        ]
    );
    assert_eq!(
        problems(&[http, ("CLAUDE_AGENT_MCP_PORT", "65536")], &cwd),
        vec!["CLAUDE_AGENT_MCP_PORT=65536 is out of range (1–65535)"]
    );
    let config = config(&[http, ("CLAUDE_AGENT_MCP_PORT", "65535")], &cwd);
    assert_eq!(config.transport, Transport::StreamableHttp);
    assert_eq!(config.http_port(), Some(65535));
    // stdio does not range-check the port (and does not need the host).
    let stdio = self::config(
        &[
            ("CLAUDE_AGENT_MCP_PORT", "-1"),
            ("CLAUDE_AGENT_MCP_HOST", ""),
        ],
        &cwd,
    );
    assert_eq!(stdio.port, -1);
    assert_eq!(stdio.http_port(), None);
}

#[test]
fn a_non_integer_port_aborts_even_for_stdio() {
    let (_dir, cwd) = temp_cwd();
    assert_eq!(
        problems(&[("CLAUDE_AGENT_MCP_PORT", "80a")], &cwd),
        vec!["CLAUDE_AGENT_MCP_PORT='80a' is not a valid integer"]
    );
}

#[test]
fn the_metrics_address_is_validated() {
    let (_dir, cwd) = temp_cwd();
    assert_eq!(config(&[], &cwd).metrics_addr, None);
    assert_eq!(
        config(&[("CLAUDE_AGENT_MCP_METRICS_ADDR", " ")], &cwd).metrics_addr,
        None
    );
    let set = config(
        &[("CLAUDE_AGENT_MCP_METRICS_ADDR", " 127.0.0.1:9464 ")],
        &cwd,
    );
    assert_eq!(set.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
    let set = config(&[("CLAUDE_AGENT_MCP_METRICS_ADDR", "[::1]:9464")], &cwd);
    assert_eq!(set.metrics_addr, Some("[::1]:9464".parse().unwrap()));
    // Off loopback, with the token: accepted (the token then guards /metrics there).
    let set = config(
        &[
            ("CLAUDE_AGENT_MCP_METRICS_ADDR", "0.0.0.0:9464"),
            ("CLAUDE_AGENT_MCP_HTTP_BEARER_TOKEN", "t"),
        ],
        &cwd,
    );
    assert_eq!(set.metrics_addr, Some("0.0.0.0:9464".parse().unwrap()));
    for (value, problem) in [
        (
            "0.0.0.0:9464",
            "CLAUDE_AGENT_MCP_METRICS_ADDR='0.0.0.0:9464' is not a loopback address: serving metrics on it requires CLAUDE_AGENT_MCP_HTTP_BEARER_TOKEN to be set",
        ),
        (
            "9464",
            "CLAUDE_AGENT_MCP_METRICS_ADDR='9464' is not a valid address: give IP:PORT, e.g. 127.0.0.1:9464",
        ),
        (
            "localhost:9464",
            "CLAUDE_AGENT_MCP_METRICS_ADDR='localhost:9464' is not a valid address: give IP:PORT, e.g. 127.0.0.1:9464",
        ),
        (
            "127.0.0.1:99999",
            "CLAUDE_AGENT_MCP_METRICS_ADDR='127.0.0.1:99999' is not a valid address: give IP:PORT, e.g. 127.0.0.1:9464",
        ),
    ] {
        assert_eq!(
            problems(&[("CLAUDE_AGENT_MCP_METRICS_ADDR", value)], &cwd),
            vec![problem],
            "{value}"
        );
    }
}

#[test]
fn http_connection_limits_are_validated() {
    let (_dir, cwd) = temp_cwd();
    let set = config(
        &[
            ("CLAUDE_AGENT_MCP_HTTP_HEADER_TIMEOUT", " 3 "),
            ("CLAUDE_AGENT_MCP_HTTP_MAX_CONNECTIONS", "7"),
        ],
        &cwd,
    );
    assert_eq!(set.http_header_timeout_secs, 3);
    assert_eq!(set.http_max_connections, 7);
    // Checked whatever the transport: a bad value is an error naming the variable.
    for (name, value, problem) in [
        (
            "CLAUDE_AGENT_MCP_HTTP_HEADER_TIMEOUT",
            "0",
            "CLAUDE_AGENT_MCP_HTTP_HEADER_TIMEOUT=0 is not valid: the timeout must be at least 1 second",
        ),
        (
            "CLAUDE_AGENT_MCP_HTTP_HEADER_TIMEOUT",
            "ten",
            "CLAUDE_AGENT_MCP_HTTP_HEADER_TIMEOUT='ten' is not a valid positive integer",
        ),
        (
            "CLAUDE_AGENT_MCP_HTTP_HEADER_TIMEOUT",
            "-1",
            "CLAUDE_AGENT_MCP_HTTP_HEADER_TIMEOUT='-1' is not a valid positive integer",
        ),
        (
            "CLAUDE_AGENT_MCP_HTTP_MAX_CONNECTIONS",
            "0",
            "CLAUDE_AGENT_MCP_HTTP_MAX_CONNECTIONS=0 is out of range (1–1000000)",
        ),
        (
            "CLAUDE_AGENT_MCP_HTTP_MAX_CONNECTIONS",
            "1000001",
            "CLAUDE_AGENT_MCP_HTTP_MAX_CONNECTIONS=1000001 is out of range (1–1000000)",
        ),
        (
            "CLAUDE_AGENT_MCP_HTTP_MAX_CONNECTIONS",
            "many",
            "CLAUDE_AGENT_MCP_HTTP_MAX_CONNECTIONS='many' is not a valid positive integer",
        ),
    ] {
        assert_eq!(
            problems(&[(name, value)], &cwd),
            vec![problem],
            "{name}={value}"
        );
    }
}

#[test]
fn listening_for_cancel_requests_is_on_unless_turned_off() {
    let (_dir, cwd) = temp_cwd();
    assert!(config(&[], &cwd).database_listen);
    for (value, listens) in [
        ("false", false),
        ("0", false),
        ("no", false),
        ("true", true),
    ] {
        let set = config(&[("CLAUDE_AGENT_MCP_DATABASE_LISTEN", value)], &cwd);
        assert_eq!(set.database_listen, listens, "{value}");
    }
}

#[test]
fn the_database_pool_size_is_validated() {
    let (_dir, cwd) = temp_cwd();
    let set = config(
        &[("CLAUDE_AGENT_MCP_DATABASE_MAX_CONNECTIONS", " 32 ")],
        &cwd,
    );
    assert_eq!(set.database_max_connections, 32);
    for (value, problem) in [
        (
            "0",
            "CLAUDE_AGENT_MCP_DATABASE_MAX_CONNECTIONS=0 is out of range (1–1000)",
        ),
        (
            "1001",
            "CLAUDE_AGENT_MCP_DATABASE_MAX_CONNECTIONS=1001 is out of range (1–1000)",
        ),
        (
            "lots",
            "CLAUDE_AGENT_MCP_DATABASE_MAX_CONNECTIONS='lots' is not a valid positive integer",
        ),
    ] {
        assert_eq!(
            problems(
                &[("CLAUDE_AGENT_MCP_DATABASE_MAX_CONNECTIONS", value)],
                &cwd
            ),
            vec![problem],
            "{value}"
        );
    }
}

#[test]
fn non_loopback_hosts_need_a_bearer_token() {
    let (_dir, cwd) = temp_cwd();
    let http = ("CLAUDE_AGENT_MCP_TRANSPORT", "streamable-http");
    assert_eq!(
        problems(&[http, ("CLAUDE_AGENT_MCP_HOST", "0.0.0.0")], &cwd),
        vec![
            "CLAUDE_AGENT_MCP_HOST='0.0.0.0' is not a loopback address: binding streamable-http to it requires \
             CLAUDE_AGENT_MCP_HTTP_BEARER_TOKEN to be set"
        ]
    );
    // An empty token is no token.
    assert_eq!(
        problems(
            &[
                http,
                ("CLAUDE_AGENT_MCP_HOST", "example.com"),
                ("CLAUDE_AGENT_MCP_HTTP_BEARER_TOKEN", " ")
            ],
            &cwd
        )
        .len(),
        1
    );
    let with_token = config(
        &[
            http,
            ("CLAUDE_AGENT_MCP_HOST", "0.0.0.0"),
            ("CLAUDE_AGENT_MCP_HTTP_BEARER_TOKEN", "s"),
        ],
        &cwd,
    );
    assert_eq!(with_token.host, "0.0.0.0");
    for host in [
        "localhost",
        "LOCALHOST",
        "127.0.0.1",
        "127.9.8.7",
        "::1",
        "[::1]",
        "::ffff:127.0.0.1",
        "[::ffff:127.0.0.1]",
    ] {
        assert!(is_loopback_host(host), "{host}");
        config(&[http, ("CLAUDE_AGENT_MCP_HOST", host)], &cwd);
    }
    for host in [
        "0.0.0.0",
        "::",
        "10.0.0.1",
        "128.0.0.1",
        "localhost.example.com",
        "my-host",
    ] {
        assert!(!is_loopback_host(host), "{host}");
    }
    // stdio never binds, so the host does not matter.
    config(&[("CLAUDE_AGENT_MCP_HOST", "0.0.0.0")], &cwd);
}

#[test]
fn apntalk_requires_claude_code_and_stdio() {
    let (_dir, cwd) = temp_cwd();
    let apntalk = ("CLAUDE_AGENT_MCP_MODE", "apntalk_verification");
    assert_eq!(
        problems(
            &[apntalk, ("CLAUDE_AGENT_MCP_TRANSPORT", "streamable-http")],
            &cwd
        ),
        vec![
            "CLAUDE_AGENT_MCP_MODE=apntalk_verification requires CLAUDE_AGENT_MCP_EXECUTION_BACKEND='claude_code', got 'api'",
            "CLAUDE_AGENT_MCP_MODE=apntalk_verification requires CLAUDE_AGENT_MCP_TRANSPORT='stdio', got 'streamable-http'",
        ]
    );
    let ok = config(
        &[
            apntalk,
            ("CLAUDE_AGENT_MCP_EXECUTION_BACKEND", "claude_code"),
        ],
        &cwd,
    );
    assert_eq!(ok.mode, RuntimeMode::ApntalkVerification);
    assert_eq!(ok.backend, BackendKind::ClaudeCode);
}

#[test]
fn all_problems_are_reported_together() {
    let (_dir, cwd) = temp_cwd();
    let errors = from_vars(
        &env(&[
            ("CLAUDE_AGENT_MCP_MODE", "nope"),
            ("CLAUDE_AGENT_MCP_TRANSPORT", "carrier-pigeon"),
            ("CLAUDE_AGENT_MCP_LOG_LEVEL", "loud"),
            ("CLAUDE_AGENT_MCP_EXECUTION_BACKEND", "magic"),
            ("CLAUDE_AGENT_MCP_LOCK_TTL", "abc"),
            ("CLAUDE_AGENT_MCP_CLAUDE_CODE_MAX_CONTINUATION_TURNS", "1.5"),
        ]),
        &cwd,
        &CliOverrides::default(),
    )
    .unwrap_err();
    assert_eq!(
        errors.to_string(),
        "claude-agent-mcp startup configuration error(s):\n\
         \x20 • CLAUDE_AGENT_MCP_LOCK_TTL='abc' is not a valid integer\n\
         \x20 • CLAUDE_AGENT_MCP_CLAUDE_CODE_MAX_CONTINUATION_TURNS='1.5' is not a valid integer\n\
         \x20 • CLAUDE_AGENT_MCP_MODE='nope' is not valid. Choose from: ['apntalk_verification', 'standard']\n\
         \x20 • CLAUDE_AGENT_MCP_TRANSPORT='carrier-pigeon' is not valid. Choose from: ['stdio', 'streamable-http']\n\
         \x20 • CLAUDE_AGENT_MCP_LOG_LEVEL='LOUD' is not a valid log level\n\
         \x20 • CLAUDE_AGENT_MCP_EXECUTION_BACKEND='magic' is not valid. Choose from: ['api', 'claude_code']"
    );
}

#[test]
fn every_integer_variable_is_checked() {
    let (_dir, cwd) = temp_cwd();
    let names = [
        "CLAUDE_AGENT_MCP_PORT",
        "CLAUDE_AGENT_MCP_LOCK_TTL",
        "CLAUDE_AGENT_MCP_MAX_ARTIFACT_BYTES",
        "CLAUDE_AGENT_MCP_CLAUDE_CODE_TIMEOUT",
        "CLAUDE_AGENT_MCP_CLAUDE_CODE_MAX_CONTINUATION_TURNS",
        "CLAUDE_AGENT_MCP_CLAUDE_CODE_MAX_CONTINUATION_WARNINGS",
        "CLAUDE_AGENT_MCP_CLAUDE_CODE_MAX_CONTINUATION_FORWARDING_EVENTS",
        "CLAUDE_AGENT_MCP_CLAUDE_CODE_MAX_MEDIATED_ACTIONS_PER_TURN",
        "CLAUDE_AGENT_MCP_CLAUDE_CODE_MAX_MEDIATED_WORKFLOW_STEPS",
        "CLAUDE_AGENT_MCP_CLAUDE_CODE_MAX_SESSION_MEDIATED_APPROVALS",
    ];
    for name in names {
        assert_eq!(
            problems(&[(name, "x")], &cwd),
            vec![format!("{name}='x' is not a valid integer")]
        );
    }
    for name in [
        "CLAUDE_AGENT_MCP_API_MAX_RETRIES",
        "CLAUDE_AGENT_MCP_API_TIMEOUT",
    ] {
        assert_eq!(
            problems(&[(name, "-1")], &cwd),
            vec![format!("{name}='-1' is not a valid non-negative integer")]
        );
    }
    // Legacy names are reported under the name that was read.
    assert_eq!(
        problems(&[("CLAUDE_AGENT_LOCK_TTL_SECONDS", "soon")], &cwd),
        vec!["CLAUDE_AGENT_LOCK_TTL_SECONDS='soon' is not a valid integer"]
    );
}

#[test]
fn set_to_empty_wins() {
    let (_dir, cwd) = temp_cwd();
    assert_eq!(
        problems(
            &[
                ("CLAUDE_AGENT_MCP_LOCK_TTL", ""),
                ("CLAUDE_AGENT_LOCK_TTL_SECONDS", "60")
            ],
            &cwd
        ),
        vec!["CLAUDE_AGENT_MCP_LOCK_TTL='' is not a valid integer"]
    );
    let config = config(
        &[
            ("CLAUDE_AGENT_MCP_STATE_DIR", ""),
            ("CLAUDE_AGENT_STATE_DIR", "legacy"),
            ("CLAUDE_AGENT_MCP_MODEL", ""),
            ("CLAUDE_AGENT_MODEL", "legacy-model"),
            ("CLAUDE_AGENT_MCP_ALLOWED_DIRS", ""),
            ("CLAUDE_AGENT_ALLOWED_DIRS", "/legacy"),
            ("CLAUDE_AGENT_MCP_OPERATOR_PROFILE", "  "),
        ],
        &cwd,
    );
    assert_eq!(config.state_dir, cwd);
    assert_eq!(config.db_path, cwd.join("claude-agent-mcp.db"));
    assert_eq!(config.artifact_dir, cwd.join("artifacts"));
    assert_eq!(config.model, "");
    assert_eq!(config.allowed_dirs, vec![cwd]);
    assert_eq!(config.operator_profile, None);
}

#[test]
fn legacy_aliases_apply_only_when_the_new_name_is_unset() {
    let (_dir, cwd) = temp_cwd();
    let legacy = [
        ("CLAUDE_AGENT_STATE_DIR", "old-state"),
        ("CLAUDE_AGENT_LOG_LEVEL", "error"),
        ("CLAUDE_AGENT_MODEL", "old-model"),
        ("CLAUDE_AGENT_LOCK_TTL_SECONDS", "11"),
        ("CLAUDE_AGENT_ALLOWED_DIRS", "old-a,old-b"),
        ("CLAUDE_AGENT_MAX_ARTIFACT_BYTES", "12"),
    ];
    let old = config(&legacy, &cwd);
    assert_eq!(old.state_dir, cwd.join("old-state"));
    assert_eq!(old.log_level, LogLevel::Error);
    assert_eq!(old.model, "old-model");
    assert_eq!(old.lock_ttl_secs, 11);
    assert_eq!(old.allowed_dirs, vec![cwd.join("old-a"), cwd.join("old-b")]);
    assert_eq!(old.max_artifact_bytes, 12);

    let mut both = legacy.to_vec();
    both.extend([
        ("CLAUDE_AGENT_MCP_STATE_DIR", "new-state"),
        ("CLAUDE_AGENT_MCP_LOG_LEVEL", "warning"),
        ("CLAUDE_AGENT_MCP_MODEL", "new-model"),
        ("CLAUDE_AGENT_MCP_LOCK_TTL", "21"),
        ("CLAUDE_AGENT_MCP_ALLOWED_DIRS", "new-a"),
        ("CLAUDE_AGENT_MCP_MAX_ARTIFACT_BYTES", "22"),
    ]);
    let new = config(&both, &cwd);
    assert_eq!(new.state_dir, cwd.join("new-state"));
    assert_eq!(new.log_level, LogLevel::Warning);
    assert_eq!(new.model, "new-model");
    assert_eq!(new.lock_ttl_secs, 21);
    assert_eq!(new.allowed_dirs, vec![cwd.join("new-a")]);
    assert_eq!(new.max_artifact_bytes, 22);
}

#[test]
fn allowed_dirs_can_be_made_empty_with_a_lone_comma() {
    let (_dir, cwd) = temp_cwd();
    assert!(
        config(&[("CLAUDE_AGENT_MCP_ALLOWED_DIRS", " , ")], &cwd)
            .allowed_dirs
            .is_empty()
    );
}

#[test]
fn paths_are_canonicalised_through_symlinks() {
    let (_dir, cwd) = temp_cwd();
    std::fs::create_dir(cwd.join("real")).unwrap();
    std::os::unix::fs::symlink(cwd.join("real"), cwd.join("link")).unwrap();
    let config = config(
        &[
            ("CLAUDE_AGENT_MCP_STATE_DIR", "link/state"),
            ("CLAUDE_AGENT_MCP_ALLOWED_DIRS", "link,./x/../link/sub"),
        ],
        &cwd,
    );
    assert_eq!(config.state_dir, cwd.join("real/state"));
    assert_eq!(config.db_path, cwd.join("real/state/claude-agent-mcp.db"));
    assert_eq!(
        config.allowed_dirs,
        vec![cwd.join("real"), cwd.join("real/sub")]
    );
    // The CWD itself is canonicalised.
    let via_link = from_vars(
        &BTreeMap::new(),
        &cwd.join("link"),
        &CliOverrides::default(),
    )
    .unwrap();
    assert_eq!(via_link.cwd, cwd.join("real"));
    assert_eq!(via_link.allowed_dirs, vec![cwd.join("real")]);
}

#[test]
fn presets_supply_defaults() {
    let (_dir, cwd) = temp_cwd();
    // (preset, enabled, turns, warnings, events, actions, steps, approvals, results, policy)
    let table = [
        (
            "safe_default",
            false,
            5,
            3,
            3,
            1,
            1,
            10,
            false,
            "conservative",
        ),
        (
            "continuity_optimized",
            false,
            10,
            5,
            5,
            1,
            1,
            10,
            true,
            "conservative",
        ),
        (
            "mediation_enabled",
            true,
            5,
            3,
            3,
            3,
            1,
            50,
            true,
            "mediation_enabled",
        ),
        (
            "workflow_limited",
            true,
            5,
            3,
            3,
            5,
            3,
            30,
            true,
            "workflow_limited",
        ),
    ];
    for (name, enabled, turns, warnings, events, actions, steps, approvals, results, policy) in
        table
    {
        let config = config(&[("CLAUDE_AGENT_MCP_OPERATOR_PROFILE", name)], &cwd);
        assert_eq!(config.operator_profile.as_deref(), Some(name));
        assert!(config.operator_profile_is_known());
        let defaults = expected_defaults(&cwd);
        assert_eq!(
            config.continuation,
            ContinuationSettings {
                max_continuation_turns: turns,
                max_continuation_warnings: warnings,
                max_continuation_forwarding_events: events,
                ..defaults.continuation
            },
            "{name}"
        );
        assert_eq!(
            config.mediation,
            MediationSettings {
                enabled,
                max_actions_per_turn: actions,
                max_workflow_steps: steps,
                max_session_approvals: approvals,
                include_results_in_continuation: results,
                policy_profile: policy.into(),
                ..defaults.mediation.clone()
            },
            "{name}"
        );
        // Presets touch nothing else.
        assert_eq!(
            Config {
                continuation: defaults.continuation.clone(),
                mediation: defaults.mediation.clone(),
                ..config
            },
            Config {
                operator_profile: Some(name.into()),
                ..defaults
            }
        );
    }
}

#[test]
fn explicit_variables_beat_presets_even_when_empty() {
    let (_dir, cwd) = temp_cwd();
    let config = config(
        &[
            ("CLAUDE_AGENT_MCP_OPERATOR_PROFILE", " Workflow_Limited "),
            (
                "CLAUDE_AGENT_MCP_CLAUDE_CODE_ENABLE_EXECUTION_MEDIATION",
                "",
            ),
            (
                "CLAUDE_AGENT_MCP_CLAUDE_CODE_MAX_MEDIATED_WORKFLOW_STEPS",
                "9",
            ),
            (
                "CLAUDE_AGENT_MCP_CLAUDE_CODE_INCLUDE_VERIFICATION_CONTEXT",
                "no",
            ),
            (
                "CLAUDE_AGENT_MCP_CLAUDE_CODE_MEDIATION_POLICY_PROFILE",
                "  ",
            ),
        ],
        &cwd,
    );
    assert_eq!(config.operator_profile.as_deref(), Some("workflow_limited"));
    assert!(!config.mediation.enabled);
    assert_eq!(config.mediation.max_workflow_steps, 9);
    assert_eq!(config.mediation.max_actions_per_turn, 5);
    assert_eq!(config.mediation.policy_profile, "");
    assert!(!config.continuation.include_verification_context);
}

#[test]
fn unknown_presets_are_accepted_silently() {
    let (_dir, cwd) = temp_cwd();
    let config = config(&[("CLAUDE_AGENT_MCP_OPERATOR_PROFILE", "Turbo")], &cwd);
    assert_eq!(config.operator_profile.as_deref(), Some("turbo"));
    assert!(!config.operator_profile_is_known());
    assert_eq!(config.continuation, expected_defaults(&cwd).continuation);
    assert_eq!(config.mediation, expected_defaults(&cwd).mediation);
}

#[test]
fn cli_overrides_replace_the_environment() {
    let (_dir, cwd) = temp_cwd();
    let vars = [
        ("CLAUDE_AGENT_MCP_MODE", "bogus"),
        ("CLAUDE_AGENT_MCP_TRANSPORT", "bogus"),
        ("CLAUDE_AGENT_MCP_HOST", ""),
        ("CLAUDE_AGENT_MCP_PORT", "not-a-port"),
        ("CLAUDE_AGENT_MCP_EXECUTION_BACKEND", "claude_code"),
    ];
    let overrides = CliOverrides {
        mode: Some("apntalk_verification".into()),
        transport: Some("stdio".into()),
        host: Some("localhost".into()),
        port: Some(1234),
        env_file: EnvFile::Disabled,
    };
    let config = from_vars(&env(&vars), &cwd, &overrides).unwrap();
    assert_eq!(config.mode, RuntimeMode::ApntalkVerification);
    assert_eq!(config.transport, Transport::Stdio);
    assert_eq!(config.host, "localhost");
    assert_eq!(config.port, 1234);

    // Overrides are validated like the environment.
    let overrides = CliOverrides {
        transport: Some("streamable-http".into()),
        port: Some(0),
        mode: Some("apntalk_verification".into()),
        ..CliOverrides::default()
    };
    assert_eq!(
        problems_with(
            &[("CLAUDE_AGENT_MCP_EXECUTION_BACKEND", "claude_code")],
            &cwd,
            &overrides
        ),
        vec![
            "CLAUDE_AGENT_MCP_PORT=0 is out of range (1–65535)",
            "CLAUDE_AGENT_MCP_MODE=apntalk_verification requires CLAUDE_AGENT_MCP_TRANSPORT='stdio', got 'streamable-http'",
        ]
    );
}

#[test]
fn secrets_stay_out_of_debug_and_serialize() {
    let (_dir, cwd) = temp_cwd();
    let config = config(
        &[
            ("ANTHROPIC_API_KEY", "sk-ant-very-secret"),
            ("CLAUDE_AGENT_MCP_HTTP_BEARER_TOKEN", "bearer-very-secret"),
        ],
        &cwd,
    );
    let debug = format!("{config:?}");
    let json = serde_json::to_string(&config).unwrap();
    for text in [&debug, &json] {
        assert!(!text.contains("very-secret"), "{text}");
    }
    assert!(debug.contains("Secret(<redacted>)"));
    let value = serde_json::to_value(&config).unwrap();
    assert!(value.get("anthropic_api_key").is_none());
    assert!(value.get("http_bearer_token").is_none());
    assert_eq!(value["mode"], "standard");
    assert_eq!(value["transport"], "stdio");
    assert_eq!(value["backend"], "api");
    assert_eq!(value["log_level"], "INFO");
    assert_eq!(value["continuation"]["max_continuation_turns"], 5);
    assert_eq!(value["mediation"]["policy_profile"], "conservative");
}

#[test]
fn api_key_problem_only_for_the_api_backend() {
    let (_dir, cwd) = temp_cwd();
    assert_eq!(
        config(&[], &cwd).api_key_problem().as_deref(),
        Some(
            "ANTHROPIC_API_KEY is required for the 'api' execution backend. Set the environment variable or use a .env file."
        )
    );
    assert!(
        config(
            &[("CLAUDE_AGENT_MCP_EXECUTION_BACKEND", "claude_code")],
            &cwd
        )
        .api_key_problem()
        .is_none()
    );
    assert!(
        config(&[("ANTHROPIC_API_KEY", "k")], &cwd)
            .api_key_problem()
            .is_none()
    );
}

fn load_in(
    env_pairs: &[(&str, &str)],
    cwd: &Path,
    env_file: EnvFile,
) -> Result<Config, ConfigErrors> {
    let overrides = CliOverrides {
        env_file,
        ..CliOverrides::default()
    };
    load_with(env(env_pairs), cwd, &overrides)
}

/// The configuration without where it came from, for comparing outcomes.
fn outcome(result: Result<Config, ConfigErrors>) -> Result<Config, ConfigErrors> {
    result.map(|config| Config {
        env_file: None,
        ..config
    })
}

#[test]
fn dotenv_fills_in_without_overriding() {
    let (_dir, cwd) = temp_cwd();
    std::fs::write(
        cwd.join(".env"),
        "# comment\nCLAUDE_AGENT_MCP_MODEL=from-file\nCLAUDE_AGENT_MCP_LOG_LEVEL=debug\nexport ANTHROPIC_API_KEY='file-key'\n",
    )
    .unwrap();
    let config = load_in(
        &[("CLAUDE_AGENT_MCP_MODEL", "from-env"), ("UNRELATED", "x")],
        &cwd,
        EnvFile::Implicit,
    )
    .unwrap();
    assert_eq!(config.model, "from-env");
    assert_eq!(config.log_level, LogLevel::Debug);
    assert_eq!(config.anthropic_api_key.expose(), "file-key");
    assert_eq!(
        config.env_file,
        Some(EnvFileUse {
            path: cwd.join(".env"),
            named: false,
            ignored: vec![],
        })
    );
    // An environment variable set to empty still wins over the file.
    let errors = load_in(
        &[("CLAUDE_AGENT_MCP_LOG_LEVEL", "")],
        &cwd,
        EnvFile::Implicit,
    )
    .unwrap_err();
    assert_eq!(
        errors.0,
        vec!["CLAUDE_AGENT_MCP_LOG_LEVEL='' is not a valid log level"]
    );
}

#[test]
fn missing_dotenv_is_fine_and_a_broken_one_is_a_problem() {
    let (_dir, cwd) = temp_cwd();
    let config = load_in(&[], &cwd, EnvFile::Implicit).unwrap();
    assert_eq!(config.env_file, None);
    std::fs::write(cwd.join(".env"), "A=1\nA=2\n").unwrap();
    assert_eq!(
        read_env_file(&cwd.join(".env")).unwrap(),
        env(&[("A", "2")])
    );
    std::fs::write(cwd.join(".env"), "GOOD=1\nthis is not an assignment\n").unwrap();
    let problems = load_in(&[], &cwd, EnvFile::Implicit).unwrap_err().0;
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].starts_with(&format!("cannot read {}", cwd.join(".env").display())),
        "{problems:?}"
    );
    // A `.env` that is a directory is no env file.
    std::fs::remove_file(cwd.join(".env")).unwrap();
    std::fs::create_dir(cwd.join(".env")).unwrap();
    assert_eq!(
        load_in(&[], &cwd, EnvFile::Implicit).unwrap().env_file,
        None
    );
}

/// The classification, spelled out: a change to it must be deliberate (and documented in
/// `docs/configuration.md`, "The `.env` file").
#[test]
fn only_the_key_the_model_the_log_level_and_the_tools_switch_are_project_settings() {
    let project: Vec<&str> = vars::ALL
        .iter()
        .filter(|(_, trust)| *trust == Trust::Project)
        .map(|(name, _)| *name)
        .collect();
    assert_eq!(
        project,
        [
            vars::ANTHROPIC_API_KEY,
            vars::LOG_LEVEL,
            vars::LEGACY_LOG_LEVEL,
            vars::MODEL,
            vars::LEGACY_MODEL,
            vars::BUILTIN_TOOLS,
        ]
    );
    for (name, reason) in [
        (vars::ANTHROPIC_BASE_URL, Reason::SendsCredentials),
        (vars::CLAUDE_CODE_CLI_PATH, Reason::Executes),
        (vars::EXECUTION_BACKEND, Reason::Executes),
        (vars::FEDERATION_ENABLED, Reason::Executes),
        (vars::FEDERATION_CONFIG, Reason::Executes),
        (vars::ALLOWED_DIRS, Reason::Files),
        (vars::LEGACY_ALLOWED_DIRS, Reason::Files),
        (vars::STATE_DIR, Reason::Files),
        (vars::LEGACY_STATE_DIR, Reason::Files),
        (vars::DB_PATH, Reason::Files),
        (vars::ARTIFACT_DIR, Reason::Files),
        (vars::TRANSPORT, Reason::Listens),
        (vars::HOST, Reason::Listens),
        (vars::PORT, Reason::Listens),
        (vars::HTTP_BEARER_TOKEN, Reason::Listens),
        (vars::ALLOWED_ORIGINS, Reason::Listens),
        (vars::HTTP_HEADER_TIMEOUT, Reason::Limits),
        (vars::HTTP_MAX_CONNECTIONS, Reason::Limits),
        (vars::METRICS_ADDR, Reason::Listens),
    ] {
        assert_eq!(vars::trust(name), Some(Trust::Operator(reason)), "{name}");
    }
    assert_eq!(vars::trust("PATH"), None);
    let mut names: Vec<&str> = vars::ALL.iter().map(|(name, _)| *name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), vars::ALL.len(), "a name is declared twice");
}

/// A value of `name` that changes the outcome of loading (the configuration, or an error),
/// so that ignoring it and honouring it can be told apart.
fn effective_value(name: &str, cwd: &Path) -> String {
    let unset = from_vars(&BTreeMap::new(), cwd, &CliOverrides::default());
    [
        "true",
        "false",
        "7",
        "/elsewhere/x",
        "claude_code",
        "streamable-http",
        "0.0.0.0",
        "debug",
    ]
    .into_iter()
    .find(|value| from_vars(&env(&[(name, value)]), cwd, &CliOverrides::default()) != unset)
    .unwrap_or_else(|| panic!("no candidate value of {name} changes the configuration"))
    .to_owned()
}

#[test]
fn an_implicit_dotenv_sets_only_project_variables_and_a_named_file_sets_all() {
    let (_dir, cwd) = temp_cwd();
    let (_elsewhere, named_dir) = temp_cwd();
    let named = named_dir.join("operator.env");
    let unset = outcome(from_vars(&BTreeMap::new(), &cwd, &CliOverrides::default()));
    for (name, trust) in vars::ALL {
        let value = effective_value(name, &cwd);
        let line = format!("{name}={value}\n");
        std::fs::write(cwd.join(".env"), &line).unwrap();
        std::fs::write(&named, &line).unwrap();
        let set = outcome(from_vars(
            &env(&[(name, &value)]),
            &cwd,
            &CliOverrides::default(),
        ));
        let implicit = load_in(&[], &cwd, EnvFile::Implicit);
        match trust {
            Trust::Project => assert_eq!(outcome(implicit), set, "{name} from .env"),
            Trust::Operator(_) => {
                let config = implicit.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    config.env_file.as_ref().map(|f| f.ignored.clone()),
                    Some(vec![(*name).to_owned()]),
                    "{name}"
                );
                assert_eq!(outcome(Ok(config)), unset, "{name} from .env is ignored");
            }
        }
        assert_eq!(
            outcome(load_in(&[], &cwd, EnvFile::Named(named.clone()))),
            set,
            "{name} from --env-file"
        );
        assert_eq!(
            outcome(load_in(&[], &cwd, EnvFile::Disabled)),
            unset,
            "{name} with --no-env-file"
        );
    }
}

#[test]
fn the_dangerous_settings_of_an_implicit_dotenv_are_ignored_with_one_warning() {
    let (_dir, cwd) = temp_cwd();
    std::fs::write(
        cwd.join(".env"),
        "ANTHROPIC_API_KEY=project-key\n\
         ANTHROPIC_BASE_URL=https://attacker.example\n\
         CLAUDE_AGENT_MCP_EXECUTION_BACKEND=claude_code\n\
         CLAUDE_AGENT_MCP_CLAUDE_CODE_CLI_PATH=/tmp/evil\n\
         CLAUDE_AGENT_MCP_FEDERATION_ENABLED=true\n\
         CLAUDE_AGENT_MCP_FEDERATION_CONFIG=/tmp/evil.json\n\
         CLAUDE_AGENT_MCP_ALLOWED_DIRS=/\n\
         CLAUDE_AGENT_MCP_STATE_DIR=/tmp/evil-state\n\
         CLAUDE_AGENT_MCP_TRANSPORT=streamable-http\n\
         CLAUDE_AGENT_MCP_HOST=0.0.0.0\n\
         CLAUDE_AGENT_MCP_OPERATOR_PROFILE=mediation_enabled\n\
         DATABASE_URL=postgres://project\n",
    )
    .unwrap();
    // An operator variable the environment also sets is still reported: the file tried.
    let config = load_in(
        &[("ANTHROPIC_BASE_URL", "https://operator.example")],
        &cwd,
        EnvFile::Implicit,
    )
    .unwrap();
    assert_eq!(config.anthropic_api_key.expose(), "project-key");
    assert_eq!(config.anthropic_base_url, "https://operator.example");
    assert_eq!(config.backend, BackendKind::Api);
    assert_eq!(config.claude_code_cli_path, None);
    assert!(!config.federation_enabled);
    assert_eq!(config.federation_config, None);
    assert_eq!(config.allowed_dirs, vec![cwd.clone()]);
    assert_eq!(config.state_dir, cwd.join(".state"));
    assert_eq!(config.transport, Transport::Stdio);
    assert_eq!(config.host, "127.0.0.1");
    assert_eq!(config.operator_profile, None);
    let used = config.env_file.unwrap();
    assert_eq!(
        used.ignored,
        [
            "ANTHROPIC_BASE_URL",
            "CLAUDE_AGENT_MCP_ALLOWED_DIRS",
            "CLAUDE_AGENT_MCP_CLAUDE_CODE_CLI_PATH",
            "CLAUDE_AGENT_MCP_EXECUTION_BACKEND",
            "CLAUDE_AGENT_MCP_FEDERATION_CONFIG",
            "CLAUDE_AGENT_MCP_FEDERATION_ENABLED",
            "CLAUDE_AGENT_MCP_HOST",
            "CLAUDE_AGENT_MCP_OPERATOR_PROFILE",
            "CLAUDE_AGENT_MCP_STATE_DIR",
            "CLAUDE_AGENT_MCP_TRANSPORT",
        ]
    );
    let warning = used.warning().unwrap();
    assert!(!warning.contains('\n'), "one line: {warning}");
    assert!(
        warning.starts_with(&format!(
            "claude-agent-mcp: warning: ignored ANTHROPIC_BASE_URL, CLAUDE_AGENT_MCP_ALLOWED_DIRS, \
             CLAUDE_AGENT_MCP_CLAUDE_CODE_CLI_PATH, CLAUDE_AGENT_MCP_EXECUTION_BACKEND, \
             CLAUDE_AGENT_MCP_FEDERATION_CONFIG, CLAUDE_AGENT_MCP_FEDERATION_ENABLED, \
             CLAUDE_AGENT_MCP_HOST, CLAUDE_AGENT_MCP_OPERATOR_PROFILE, CLAUDE_AGENT_MCP_STATE_DIR, \
             CLAUDE_AGENT_MCP_TRANSPORT in {}: a .env found in the working directory may set only \
             ANTHROPIC_API_KEY, CLAUDE_AGENT_MCP_LOG_LEVEL, CLAUDE_AGENT_LOG_LEVEL, \
             CLAUDE_AGENT_MCP_MODEL, CLAUDE_AGENT_MODEL, CLAUDE_AGENT_MCP_BUILTIN_TOOLS. ",
            cwd.join(".env").display()
        )),
        "{warning}"
    );
    assert!(warning.contains("--env-file PATH"), "{warning}");
    for value in [
        "attacker",
        "evil",
        "0.0.0.0",
        "mediation_enabled",
        "project-key",
        "postgres",
    ] {
        assert!(!warning.contains(value), "{value} in {warning}");
    }

    // A file without operator settings warns about nothing.
    std::fs::write(cwd.join(".env"), "ANTHROPIC_API_KEY=k\nDATABASE_URL=x\n").unwrap();
    let used = load_in(&[], &cwd, EnvFile::Implicit)
        .unwrap()
        .env_file
        .unwrap();
    assert_eq!(used.warning(), None);
}

#[test]
fn a_model_name_cannot_pass_for_an_option() {
    let (_dir, cwd) = temp_cwd();
    std::fs::write(
        cwd.join(".env"),
        "CLAUDE_AGENT_MODEL=--dangerously-skip-permissions\n",
    )
    .unwrap();
    assert_eq!(
        load_in(&[], &cwd, EnvFile::Implicit).unwrap_err().0,
        vec![
            "CLAUDE_AGENT_MODEL='--dangerously-skip-permissions' is not a valid model name: it \
             must not start with '-'"
        ]
    );
    assert_eq!(
        problems(&[("CLAUDE_AGENT_MCP_MODEL", "-x")], &cwd),
        vec!["CLAUDE_AGENT_MCP_MODEL='-x' is not a valid model name: it must not start with '-'"]
    );
    assert_eq!(
        config(&[("CLAUDE_AGENT_MCP_MODEL", "a-b")], &cwd).model,
        "a-b"
    );
    assert_eq!(config(&[("CLAUDE_AGENT_MCP_MODEL", "")], &cwd).model, "");
}

#[test]
fn a_named_env_file_is_honoured_whole_and_must_exist() {
    let (_dir, cwd) = temp_cwd();
    std::fs::write(cwd.join(".env"), "CLAUDE_AGENT_MCP_MODEL=from-dotenv\n").unwrap();
    std::fs::create_dir(cwd.join("conf")).unwrap();
    std::fs::write(
        cwd.join("conf/operator.env"),
        "ANTHROPIC_BASE_URL=http://127.0.0.1:9\nCLAUDE_AGENT_MCP_ALLOWED_DIRS=/\nCLAUDE_AGENT_MCP_LOCK_TTL=9\n",
    )
    .unwrap();
    // Relative to the working directory; the implicit `.env` is then not read.
    let config = load_in(
        &[("CLAUDE_AGENT_MCP_LOCK_TTL", "10")],
        &cwd,
        EnvFile::Named("conf/operator.env".into()),
    )
    .unwrap();
    assert_eq!(config.anthropic_base_url, "http://127.0.0.1:9");
    assert_eq!(config.allowed_dirs, vec![PathBuf::from("/")]);
    assert_eq!(config.lock_ttl_secs, 10, "the environment still wins");
    assert_eq!(config.model, defaults::MODEL);
    assert_eq!(
        config.env_file,
        Some(EnvFileUse {
            path: cwd.join("conf/operator.env"),
            named: true,
            ignored: vec![],
        })
    );
    assert_eq!(config.env_file.unwrap().warning(), None);

    // Missing: the one problem, whatever else is wrong.
    let errors = load_in(
        &[("CLAUDE_AGENT_MCP_LOG_LEVEL", "VERBOSE")],
        &cwd,
        EnvFile::Named("missing.env".into()),
    )
    .unwrap_err();
    assert_eq!(
        errors.0,
        vec![format!(
            "cannot read the env file {} named by --env-file: No such file or directory (os error 2)",
            cwd.join("missing.env").display()
        )]
    );
    // Not a file, or not parsable.
    for bad in ["conf", "conf/bad.env"] {
        std::fs::write(cwd.join("conf/bad.env"), "not an assignment\n").unwrap();
        let errors = load_in(&[], &cwd, EnvFile::Named(bad.into())).unwrap_err();
        assert_eq!(errors.0.len(), 1);
        assert!(
            errors.0[0].starts_with(&format!(
                "cannot read the env file {} named by --env-file: ",
                cwd.join(bad).display()
            )),
            "{errors:?}"
        );
    }
}

#[test]
fn no_env_file_reads_nothing_not_even_a_broken_dotenv() {
    let (_dir, cwd) = temp_cwd();
    std::fs::write(cwd.join(".env"), "ANTHROPIC_API_KEY=k\nnot an assignment\n").unwrap();
    let config = load_in(&[], &cwd, EnvFile::Disabled).unwrap();
    assert_eq!(config.env_file, None);
    assert!(config.anthropic_api_key.is_empty());
}

#[test]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature
fn load_reads_the_process_environment_and_the_dotenv_file() {
    figment::Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("CLAUDE_AGENT_MCP_MODEL", "jail-model");
        jail.set_env("CLAUDE_AGENT_MCP_PORT", "");
        jail.create_file(
            ".env",
            "CLAUDE_AGENT_MCP_MODEL=file-model\nCLAUDE_AGENT_MCP_LOG_LEVEL=error\nCLAUDE_AGENT_MCP_LOCK_TTL=5\n",
        )?;
        let cwd = jail.directory().to_path_buf();
        let errors = load(&cwd, &CliOverrides::default()).unwrap_err();
        assert_eq!(
            errors.0,
            vec!["CLAUDE_AGENT_MCP_PORT='' is not a valid integer"]
        );
        let config = load(
            &cwd,
            &CliOverrides {
                port: Some(9),
                ..CliOverrides::default()
            },
        )
        .unwrap();
        assert_eq!(config.model, "jail-model");
        assert_eq!(config.log_level, LogLevel::Error);
        assert_eq!(config.lock_ttl_secs, defaults::LOCK_TTL_SECS);
        assert_eq!(config.port, 9);
        assert_eq!(config.cwd, std::fs::canonicalize(&cwd).unwrap());
        assert_eq!(
            process_env()
                .get("CLAUDE_AGENT_MCP_PORT")
                .map(String::as_str),
            Some("")
        );
        // Reading .env never sets process variables.
        assert!(std::env::var_os("CLAUDE_AGENT_MCP_LOG_LEVEL").is_none());
        Ok(())
    });
}

#[test]
fn quoted_values_are_escaped_as_python_repr_does() {
    // Expected bytes printed by CPython: `repr('sdk\u200b')`, `repr("it's")`.
    let (_dir, cwd) = temp_cwd();
    assert_eq!(
        problems(
            &[("CLAUDE_AGENT_MCP_EXECUTION_BACKEND", "sdk\u{200b}")],
            &cwd
        ),
        vec![
            r"CLAUDE_AGENT_MCP_EXECUTION_BACKEND='sdk\u200b' is not valid. Choose from: ['api', 'claude_code']"
        ]
    );
    assert_eq!(
        problems(&[("CLAUDE_AGENT_MCP_LOG_LEVEL", "it's")], &cwd),
        vec![r#"CLAUDE_AGENT_MCP_LOG_LEVEL="IT'S" is not a valid log level"#]
    );
}

#[test]
fn enums_round_trip() {
    for mode in RuntimeMode::ALL {
        assert_eq!(RuntimeMode::parse(mode.as_str()), Some(*mode));
    }
    assert_eq!(Transport::StreamableHttp.as_str(), "streamable-http");
    assert_eq!(BackendKind::ClaudeCode.to_string(), "claude_code");
    assert_eq!(LogLevel::Critical.tracing_level(), tracing::Level::ERROR);
    assert_eq!(LogLevel::Warning.tracing_level(), tracing::Level::WARN);
    assert_eq!(
        RuntimeMode::choices(),
        "['apntalk_verification', 'standard']"
    );
}

#[test]
fn claude_code_env_passthrough_names_no_server_variable() {
    let (_dir, cwd) = temp_cwd();
    let var = vars::CLAUDE_CODE_ENV_PASSTHROUGH;
    let config = config(&[(var, " AWS_PROFILE, ,CLAUDE_CODE_USE_BEDROCK ")], &cwd);
    assert_eq!(
        config.claude_code_env_passthrough,
        ["AWS_PROFILE", "CLAUDE_CODE_USE_BEDROCK"]
    );
    assert_eq!(
        problems(
            &[(
                var,
                "CLAUDE_AGENT_MCP_HTTP_BEARER_TOKEN,A=B,CLAUDE_AGENT_STATE_DIR"
            )],
            &cwd
        ),
        [
            format!(
                "{var}: 'CLAUDE_AGENT_MCP_HTTP_BEARER_TOKEN' is a variable of this server; the CLI never inherits those"
            ),
            format!("{var}: 'A=B' is not a variable name"),
            format!(
                "{var}: 'CLAUDE_AGENT_STATE_DIR' is a variable of this server; the CLI never inherits those"
            ),
        ]
    );
}

#[test]
fn claude_code_setting_sources_are_validated_and_operator_only() {
    use super::{SettingSource, Trust};
    let (_dir, cwd) = temp_cwd();
    let name = vars::CLAUDE_CODE_SETTING_SOURCES;
    let set = config(&[(name, " User ,project,local")], &cwd);
    assert_eq!(
        set.claude_code_setting_sources,
        Some(vec![
            SettingSource::User,
            SettingSource::Project,
            SettingSource::Local
        ])
    );
    assert_eq!(
        config(&[(name, "")], &cwd).claude_code_setting_sources,
        Some(vec![])
    );
    assert_eq!(config(&[], &cwd).claude_code_setting_sources, None);
    assert_eq!(
        problems(&[(name, "user,all")], &cwd),
        vec![
            "CLAUDE_AGENT_MCP_CLAUDE_CODE_SETTING_SOURCES: 'all' is not valid. Choose from: ['local', 'project', 'user']"
        ]
    );
    assert_ne!(vars::trust(name), Some(Trust::Project));
    assert!(vars::trust(name).is_some());
}

#[test]
fn the_database_url_selects_the_store_and_never_shows_its_password() {
    let (_dir, cwd) = temp_cwd();
    for unset in [
        &[][..],
        &[("CLAUDE_AGENT_MCP_DATABASE_URL", "")][..],
        &[("CLAUDE_AGENT_MCP_DATABASE_URL", "  ")][..],
    ] {
        let c = config(unset, &cwd);
        assert_eq!(c.database, Database::Sqlite);
        assert_eq!(c.database.kind(), "sqlite");
        assert_eq!(c.db_path, cwd.join(".state/claude-agent-mcp.db"));
    }
    for url in [
        "postgres://app:s3cret@db.example:5432/agents?sslmode=require",
        "postgresql://app:s3cret@db.example/agents",
        "POSTGRES://app:s3cret@db.example/agents",
    ] {
        let c = config(&[("CLAUDE_AGENT_MCP_DATABASE_URL", url)], &cwd);
        let Database::Postgresql { url: ref selected } = c.database else {
            panic!("{url}: {:?}", c.database)
        };
        assert_eq!(selected.expose(), url);
        assert_eq!(c.database.kind(), "postgresql");
        let shown = format!("{c:?}{}", serde_json::to_string(&c).unwrap());
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("app:***@db.example"), "{shown}");
    }
    // A sqlite:// URL keeps SQLite; a path in it names the database file.
    let c = config(&[("CLAUDE_AGENT_MCP_DATABASE_URL", "sqlite://")], &cwd);
    assert_eq!(
        (c.database, c.db_path),
        (Database::Sqlite, cwd.join(".state/claude-agent-mcp.db"))
    );
    let c = config(
        &[(
            "CLAUDE_AGENT_MCP_DATABASE_URL",
            "sqlite://data/s.db?mode=rwc",
        )],
        &cwd,
    );
    assert_eq!(
        (c.database, c.db_path),
        (Database::Sqlite, cwd.join("data/s.db"))
    );
    let c = config(
        &[("CLAUDE_AGENT_MCP_DATABASE_URL", "sqlite:///tmp/abs.db")],
        &cwd,
    );
    assert_eq!(c.db_path, std::path::PathBuf::from("/tmp/abs.db"));
    // Anything else is a problem that names the variable, with the password redacted.
    assert_eq!(
        problems(&[("CLAUDE_AGENT_MCP_DATABASE_URL", "mysql://u:pw@h/db")], &cwd),
        vec!["CLAUDE_AGENT_MCP_DATABASE_URL='mysql://u:***@h/db' is not a supported database URL: use postgres://…, postgresql://… or sqlite://…".to_owned()]
    );
    assert_eq!(
        problems(&[("CLAUDE_AGENT_MCP_DATABASE_URL", "sqlite://x.db"), ("CLAUDE_AGENT_MCP_DB_PATH", "y.db")], &cwd),
        vec!["CLAUDE_AGENT_MCP_DB_PATH and a sqlite:// CLAUDE_AGENT_MCP_DATABASE_URL with a path are both set: set one of them".to_owned()]
    );
}
