-- The PostgreSQL schema, version 2: MCP task state in the store (the SQLite store's migration
-- 0004 in native types), so that `tasks/get`, `tasks/cancel` and `notifications/cancelled` work
-- through any node of a fleet. A task result is `json` (its text kept as written); every time
-- is the database server's clock; every row expires and is purged in batches.

CREATE TABLE IF NOT EXISTS mcp_tasks (
    task_id             TEXT PRIMARY KEY,
    tool_name           TEXT NOT NULL,
    owner_node          TEXT NOT NULL,
    status              TEXT NOT NULL,
    status_message      TEXT,
    session_id          TEXT,
    result              JSON,
    cancel_requested_at TIMESTAMPTZ,
    ttl_ms              BIGINT NOT NULL,
    poll_interval_ms    BIGINT,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    expires_at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_mcp_tasks_expires ON mcp_tasks (expires_at);

CREATE TABLE IF NOT EXISTS mcp_requests (
    client_key          TEXT NOT NULL,
    request_id          TEXT NOT NULL,
    owner_node          TEXT NOT NULL,
    session_id          TEXT,
    cancel_requested_at TIMESTAMPTZ,
    cancel_reason       TEXT,
    created_at          TIMESTAMPTZ NOT NULL,
    expires_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (client_key, request_id)
);
CREATE INDEX IF NOT EXISTS idx_mcp_requests_expires ON mcp_requests (expires_at);

INSERT INTO schema_migrations (version) VALUES (2) ON CONFLICT (version) DO NOTHING;
