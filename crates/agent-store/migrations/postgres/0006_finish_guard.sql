-- The guard of an execution's final write (`FINISH_EXECUTION` in `src/postgres/queries.rs`):
-- called inside that one statement when the output of the turn was to be kept and another
-- execution kept it first, it raises, and the whole statement (the session's row, its events,
-- its result) is undone. The final write then needs no explicit transaction: one round trip to
-- the database instead of three (BEGIN, the statement, COMMIT). VOLATILE (the default), so
-- that the planner never evaluates it ahead of the condition that guards it.
CREATE FUNCTION claude_agent_mcp_output_kept() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the output of this turn is already kept by another execution'
        USING ERRCODE = 'CAK01';
END
$$;
