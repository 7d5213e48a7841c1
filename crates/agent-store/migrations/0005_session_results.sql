-- The result of each session's latest execution (issue 15): the envelope its call answered,
-- kept as JSON text byte for byte, so that `agent_wait_session` can collect it through any
-- process, after a restart, and more than once. One row per session; `execution` is the
-- session's `request_count` when that execution began. Additive: the original implementation
-- neither reads nor needs this table.
CREATE TABLE IF NOT EXISTS session_results (
    session_id TEXT PRIMARY KEY REFERENCES sessions(session_id),
    execution  INTEGER NOT NULL,
    envelope   TEXT NOT NULL,
    kept_at    TEXT NOT NULL
);
