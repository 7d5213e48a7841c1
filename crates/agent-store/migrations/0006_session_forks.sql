-- Forks (issue 16, `agent_fork_session`): where a session forked from another came from, its
-- parent's id and the parent's turn it was made at; NULL on every session that is not a fork.
-- Not a foreign key: `migrate-store` copies sessions in id order, a fork possibly before its
-- parent. Additive only (nullable columns), so a database of the original implementation, or of
-- an earlier version of this one, still opens; the original neither reads nor writes them.
ALTER TABLE sessions ADD COLUMN parent_session_id TEXT;
ALTER TABLE sessions ADD COLUMN forked_at_turn INTEGER;
