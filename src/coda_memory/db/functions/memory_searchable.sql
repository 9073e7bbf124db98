-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
--
-- Whether memory m is searchable ("live"): not deleted, not archived, not superseded by a newer
-- memory. The one definition every search structure follows (memory_vectors and the lexical
-- statistics, through their triggers), so a memory that leaves the set costs search nothing. Expiry is not part of it:
-- it is applied at query time (memory_visible), since time passes without a write.
-- A plain SQL expression over the row, inlined by the planner.
CREATE OR REPLACE FUNCTION memory_searchable(m memories) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT NOT m.deleted AND NOT m.archived AND m.superseded_by IS NULL
$fn$;

GRANT EXECUTE ON FUNCTION memory_searchable(memories) TO coda_app;
