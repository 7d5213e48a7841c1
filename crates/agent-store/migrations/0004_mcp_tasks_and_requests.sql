-- MCP task state in the store (issue 14): tasks (SEP-2663) and the tool calls in flight, so
-- that `tasks/get`, `tasks/cancel` and `notifications/cancelled` work through any node on the
-- same database. New tables only: a database of the original implementation, or of an earlier
-- version of this one, still opens, and the original never reads them. Every row expires
-- (`expires_at`, the stored timestamp form, compared as text) and is purged in batches.
CREATE TABLE mcp_tasks (
    task_id TEXT PRIMARY KEY,
    tool_name TEXT NOT NULL,
    owner_node TEXT NOT NULL,
    status TEXT NOT NULL,
    status_message TEXT,
    session_id TEXT,
    result TEXT,
    cancel_requested_at TEXT,
    ttl_ms INTEGER NOT NULL,
    poll_interval_ms INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX idx_mcp_tasks_expires ON mcp_tasks(expires_at);

CREATE TABLE mcp_requests (
    client_key TEXT NOT NULL,
    request_id TEXT NOT NULL,
    owner_node TEXT NOT NULL,
    session_id TEXT,
    cancel_requested_at TEXT,
    cancel_reason TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (client_key, request_id)
);
CREATE INDEX idx_mcp_requests_expires ON mcp_requests(expires_at);
