-- Usage and cost summed over a session's finished executions (`agent_get_session` reports
-- them); added by the execution's final write, under the lock. The cache counts and the cost
-- stay NULL until an execution reports them.
ALTER TABLE sessions ADD COLUMN usage_input_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN usage_output_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN usage_cache_creation_input_tokens BIGINT;
ALTER TABLE sessions ADD COLUMN usage_cache_read_input_tokens BIGINT;
ALTER TABLE sessions ADD COLUMN usage_cost_usd DOUBLE PRECISION;
