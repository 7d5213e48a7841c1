-- The PostgreSQL schema, version 3: the result of each session's latest execution (the SQLite
-- store's migration 0005): the envelope its call answered, kept as text byte for byte, so that
-- `agent_wait_session` can collect it through any node, after a restart, and more than once.
-- One row per session; `execution` is the session's `request_count` when that execution began.

CREATE TABLE IF NOT EXISTS session_results (
    session_id TEXT PRIMARY KEY REFERENCES sessions (session_id),
    execution  BIGINT NOT NULL,
    envelope   TEXT NOT NULL,
    kept_at    TIMESTAMPTZ NOT NULL
);

INSERT INTO schema_migrations (version) VALUES (3) ON CONFLICT (version) DO NOTHING;
