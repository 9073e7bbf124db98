-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
--
-- Whether a read that asked for archived (p_archived) and/or superseded (p_superseded) memories
-- shows memory m by its state: never a deleted one; an archived or superseded one only when
-- asked for. With both flags false it is memory_searchable(m) (the default of every read).
-- Used by listing, export and a search's ranking with include_archived / include_superseded.
-- A plain SQL expression, inlined by the planner (NOT m.deleted stays a top-level clause, so the
-- partial indexes WHERE NOT deleted still apply).
CREATE OR REPLACE FUNCTION memory_shown(m memories, p_archived boolean, p_superseded boolean) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT NOT m.deleted AND (p_archived OR NOT m.archived) AND (p_superseded OR m.superseded_by IS NULL)
$fn$;

GRANT EXECUTE ON FUNCTION memory_shown(memories, boolean, boolean) TO coda_app;
