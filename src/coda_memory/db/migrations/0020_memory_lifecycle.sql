-- Memory lifecycle (issue 11): versions and history, expiry, consolidation bookkeeping, and the
-- indexes that listing, export and import need. Schema only; the functions that use it live
-- with the other SQL functions.

-- version: 1 at creation, +1 on every change written to memory_history (PATCH, soft delete,
-- consolidation). expires_at: invisible everywhere once passed, erased by the retention purge.
-- merged_into: the memory this one was folded into by consolidation (it is then archived).
-- checked_at: when consolidation last compared this memory with the user's older ones
-- (NULL = not yet, or its content changed since); only unchecked memories are compared, so a
-- nightly run costs what was written since the last one, not the whole table.
-- Adding columns with constant defaults rewrites nothing (PostgreSQL >= 11).
ALTER TABLE memories
    ADD COLUMN version     integer     NOT NULL DEFAULT 1,
    ADD COLUMN updated_at  timestamptz,
    ADD COLUMN expires_at  timestamptz,
    ADD COLUMN merged_into uuid,
    ADD COLUMN checked_at  timestamptz;

-- GET /memories and the export: newest first by (created_at, id), keyset pagination. One
-- btree scanned backwards serves the row comparison (created_at, id) < (cursor) directly;
-- archived rows are in it too (include_archived), deleted ones never are.
CREATE INDEX memories_user_created_id ON memories (user_id, created_at, id) WHERE NOT deleted;
-- Memory ids are uuids, unique across users by construction; the import must never let a
-- caller-supplied id shadow another user's memory, and that check looks ids up without a user
-- (the one index that does not lead with user_id).
CREATE INDEX memories_id ON memories (id);
-- The retention purge erases memories whose expires_at has passed.
CREATE INDEX memories_expiry ON memories (user_id, expires_at) WHERE expires_at IS NOT NULL;
-- Consolidation candidates: live memories not compared yet.
CREATE INDEX memories_consolidation_candidates ON memories (user_id, created_at)
    WHERE checked_at IS NULL AND NOT deleted AND NOT archived;

-- One row per change of a memory, written in the transaction of the change on every path
-- (ingest, batch, events, PATCH, delete, consolidation, import). `changes` maps a field to
-- {"old", "new"}. Rows go with their memory: a hard delete, the retention purge and erasing
-- the user all cascade here (the history holds old content); a soft delete keeps them.
CREATE TABLE memory_history (
    user_id    text        NOT NULL,
    memory_id  uuid        NOT NULL,
    version    integer     NOT NULL,
    action     text        NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text        NOT NULL,
    changes    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (user_id, memory_id, version),
    FOREIGN KEY (user_id, memory_id) REFERENCES memories (user_id, id) ON DELETE CASCADE
);

ALTER TABLE memory_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_history FORCE ROW LEVEL SECURITY;
CREATE POLICY memory_history_by_user ON memory_history
    USING (user_id = NULLIF(current_setting('app.current_user_id', true), ''))
    WITH CHECK (user_id = NULLIF(current_setting('app.current_user_id', true), ''));
DO $$
BEGIN
    EXECUTE format('CREATE POLICY memory_history_owner ON memory_history TO %I USING (true) WITH CHECK (true)',
                   current_user);
END
$$;

REVOKE ALL ON memory_history FROM PUBLIC;
-- No UPDATE: history is append-only for the service (rows go only with their memory).
GRANT SELECT, INSERT ON memory_history TO coda_app;
