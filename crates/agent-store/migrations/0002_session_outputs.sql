-- Full outputs of successful executions, replayed on continuation instead of the one-line
-- summaries (additive: the original implementation neither reads nor needs this table).
CREATE TABLE IF NOT EXISTS session_outputs (
    session_id  TEXT NOT NULL REFERENCES sessions(session_id),
    turn_index  INTEGER NOT NULL,
    output_text TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (session_id, turn_index)
);
