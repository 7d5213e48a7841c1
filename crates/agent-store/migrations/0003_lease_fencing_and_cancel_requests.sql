-- Leases shared between processes (issue 14): a fencing generation on the lock, and a cancel
-- request any process on the same database can record for the execution that holds a session.
-- Additive only (columns with defaults), so a database of the original implementation, or of
-- an earlier version of this one, still opens; the original neither reads nor writes them.
ALTER TABLE sessions ADD COLUMN lock_generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN cancel_requested_at TEXT;
ALTER TABLE sessions ADD COLUMN cancel_reason TEXT;
