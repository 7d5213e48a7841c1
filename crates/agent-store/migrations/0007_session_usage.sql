-- Usage and cost summed over a session's finished executions (issue 16: `agent_get_session`
-- reports them). Added by the execution's final write, under the lock. The cache counts and
-- the cost stay NULL until an execution reports them. Additive: the original implementation
-- neither reads nor needs these columns.
ALTER TABLE sessions ADD COLUMN usage_input_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN usage_output_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN usage_cache_creation_input_tokens INTEGER;
ALTER TABLE sessions ADD COLUMN usage_cache_read_input_tokens INTEGER;
ALTER TABLE sessions ADD COLUMN usage_cost_usd REAL;
