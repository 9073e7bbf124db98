-- When facts change: a memory can be superseded by a newer one, and memories can be related.
--
-- superseded_by / superseded_at: the memory that replaces this one and when. A superseded
-- memory is not searchable (functions/memory_searchable.sql: the one definition the search
-- structures follow) and leaves every default read; it stays readable by id. The composite
-- foreign key keeps supersession inside one user; erasing the superseding memory for good
-- gives the old one back (SET NULL on superseded_by only).
--
-- Consolidation's merges become supersessions (merged memory superseded by the survivor):
-- merged_into and the archiving that came with it are replaced by superseded_by.
ALTER TABLE memories
    ADD COLUMN superseded_by uuid,
    ADD COLUMN superseded_at timestamptz;
ALTER TABLE memories
    ADD CONSTRAINT memories_superseded_by_fk FOREIGN KEY (user_id, superseded_by)
        REFERENCES memories (user_id, id) ON DELETE SET NULL (superseded_by),
    ADD CONSTRAINT memories_not_self_superseded CHECK (superseded_by IS DISTINCT FROM id);
-- Incoming supersessions of a memory (its relations listing, the foreign key's checks on
-- delete); only superseded rows are in it.
CREATE INDEX memories_superseded_by ON memories (user_id, superseded_by) WHERE superseded_by IS NOT NULL;

-- The definition of searchable at this version, applied before the rows below move, so the
-- triggers keep the search structures right while they do (functions/memory_searchable.sql
-- holds the same definition and is re-applied after the migrations).
CREATE OR REPLACE FUNCTION memory_searchable(m memories) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT NOT m.deleted AND NOT m.archived AND m.superseded_by IS NULL
$fn$;

UPDATE memories
SET superseded_by = merged_into, superseded_at = coalesce(archived_at, updated_at, now()),
    archived = false, archived_at = NULL
WHERE merged_into IS NOT NULL;
ALTER TABLE memories DROP COLUMN merged_into;

-- Typed relations between two memories of one user (extends, derived_from, relates_to).
-- Supersession is not stored here: it is memories.superseded_by (listed as type supersedes).
-- Rows go with either memory (hard delete, purge, erasing the user cascade here).
CREATE TABLE memory_relations (
    user_id    text        NOT NULL,
    source_id  uuid        NOT NULL,
    type       text        NOT NULL CHECK (type IN ('extends', 'derived_from', 'relates_to')),
    target_id  uuid        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, source_id, type, target_id),
    CHECK (source_id <> target_id),
    FOREIGN KEY (user_id, source_id) REFERENCES memories (user_id, id) ON DELETE CASCADE,
    FOREIGN KEY (user_id, target_id) REFERENCES memories (user_id, id) ON DELETE CASCADE
);
-- incoming relations of a memory
CREATE INDEX memory_relations_target ON memory_relations (user_id, target_id);

ALTER TABLE memory_relations ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_relations FORCE ROW LEVEL SECURITY;
CREATE POLICY memory_relations_by_user ON memory_relations
    USING (user_id = NULLIF(current_setting('app.current_user_id', true), ''))
    WITH CHECK (user_id = NULLIF(current_setting('app.current_user_id', true), ''));
DO $$
BEGIN
    EXECUTE format('CREATE POLICY memory_relations_owner ON memory_relations TO %I USING (true) WITH CHECK (true)',
                   current_user);
END
$$;
REVOKE ALL ON memory_relations FROM PUBLIC;
GRANT SELECT, INSERT, DELETE ON memory_relations TO coda_app;
