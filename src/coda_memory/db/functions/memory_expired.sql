-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
--
-- Whether memory m has expired: its expires_at has passed. The one definition of expiry: an
-- expired memory is invisible everywhere (memory_visible for searches and listings, NOT
-- memory_expired(m) for reads by id, dedup and consolidation; db/filters.py NOT_EXPIRED on the
-- Python side) until the retention purge (job_purge_batch) erases it. Applied at query time,
-- not kept in memory_searchable, since time passes without a write.
-- A plain SQL expression over the row, inlined by the planner (NOT memory_expired(m) becomes
-- m.expires_at IS NULL OR m.expires_at > now(), so indexes on expires_at still apply).
CREATE OR REPLACE FUNCTION memory_expired(m memories) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT m.expires_at IS NOT NULL AND m.expires_at <= now()
$fn$;

GRANT EXECUTE ON FUNCTION memory_expired(memories) TO coda_app;
