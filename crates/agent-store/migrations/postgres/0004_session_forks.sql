-- The PostgreSQL schema, version 4: forks (the SQLite store's migration 0006). Where a session
-- forked from another came from, its parent's id and the parent's turn it was made at; NULL on
-- every session that is not a fork. Not a foreign key: `migrate-store` copies sessions in id
-- order, a fork possibly before its parent.

ALTER TABLE sessions ADD COLUMN IF NOT EXISTS parent_session_id TEXT;
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS forked_at_turn BIGINT;

INSERT INTO schema_migrations (version) VALUES (4) ON CONFLICT (version) DO NOTHING;
