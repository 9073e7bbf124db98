-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
--
-- Keeps memory_tallies (migration 0050) equal to the counts of the keys of every memory, in the
-- transaction that writes memories, whatever the statement: insert (ingest, batch, import),
-- update (soft delete, archive, restore, edits, superseding, access statistics), delete (hard
-- delete, erase, purge). Statement-level triggers with transition tables, like memory_vectors:
-- one statement, one upsert of the changed keys, in key order (two writers of one user take the
-- rows in the same order). An update that moves no key (most access-statistics updates: the
-- recall key changes only at the first and the fifth access) writes nothing.

-- The keys memory m is counted under. STABLE, not IMMUTABLE: to_char. The day is formatted
-- explicitly (a date's text form follows DateStyle). Inlined by the planner into the triggers'
-- statements (the rows of a transition table).
CREATE OR REPLACE FUNCTION memory_tally_keys(m memories)
RETURNS TABLE (facet text, key text)
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT 'state', CASE WHEN m.deleted THEN 'deleted' WHEN m.archived THEN 'archived'
                         WHEN m.superseded_by IS NOT NULL THEN 'superseded' ELSE 'live' END
    UNION ALL
    SELECT 'day', to_char(m.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') WHERE NOT m.deleted
    UNION ALL
    SELECT v.facet, v.key
    FROM (VALUES ('content_type', m.content_type), ('source_type', m.source_type),
                 ('recall', CASE WHEN m.access_count = 0 THEN 'never' WHEN m.access_count < 5 THEN 'one_to_four'
                                 ELSE 'five_plus' END)) AS v(facet, key)
    WHERE public.memory_searchable(m)
    UNION ALL
    SELECT 'tag', t.tag FROM (SELECT DISTINCT unnest(m.tags) AS tag) t WHERE public.memory_searchable(m)
$fn$;

-- The same keys for a row of a scan of memories (memory_stats' expired rows): an inlined
-- memory_tally_keys fed the whole row of a partitioned scan fails to plan ("variable not found
-- in subplan target list"), so this wrapper is a call per row (the SET clause keeps it out of
-- line): ~20 us a row, for the few rows that expired since the last purge.
CREATE OR REPLACE FUNCTION memory_tally_keys_of_row(m memories)
RETURNS TABLE (facet text, key text)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, public AS $fn$
    SELECT k.facet, k.key FROM public.memory_tally_keys(m) k
$fn$;

CREATE OR REPLACE FUNCTION memory_tallies_on_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
BEGIN
    INSERT INTO public.memory_tallies AS t (user_id, facet, key, n)
    SELECT r.user_id, k.facet, k.key, count(*)
    FROM new_rows r CROSS JOIN LATERAL public.memory_tally_keys(r) k
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (user_id, facet, key) DO UPDATE SET n = t.n + excluded.n;
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION memory_tallies_on_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
BEGIN
    INSERT INTO public.memory_tallies AS t (user_id, facet, key, n)
    SELECT r.user_id, k.facet, k.key, -count(*)
    FROM old_rows r CROSS JOIN LATERAL public.memory_tally_keys(r) k
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (user_id, facet, key) DO UPDATE SET n = t.n + excluded.n;
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION memory_tallies_on_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
BEGIN
    INSERT INTO public.memory_tallies AS t (user_id, facet, key, n)
    SELECT d.user_id, d.facet, d.key, sum(d.n)
    FROM (SELECT r.user_id, k.facet, k.key, 1 AS n FROM new_rows r CROSS JOIN LATERAL public.memory_tally_keys(r) k
          UNION ALL
          SELECT r.user_id, k.facet, k.key, -1 FROM old_rows r CROSS JOIN LATERAL public.memory_tally_keys(r) k) d
    GROUP BY 1, 2, 3 HAVING sum(d.n) <> 0 ORDER BY 1, 2, 3
    ON CONFLICT (user_id, facet, key) DO UPDATE SET n = t.n + excluded.n;
    RETURN NULL;
END
$fn$;

REVOKE ALL ON FUNCTION memory_tally_keys(memories) FROM PUBLIC;
REVOKE ALL ON FUNCTION memory_tally_keys_of_row(memories) FROM PUBLIC;
REVOKE ALL ON FUNCTION memory_tallies_on_insert() FROM PUBLIC;
REVOKE ALL ON FUNCTION memory_tallies_on_delete() FROM PUBLIC;
REVOKE ALL ON FUNCTION memory_tallies_on_update() FROM PUBLIC;

CREATE OR REPLACE TRIGGER memories_tallies_insert AFTER INSERT ON memories
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION memory_tallies_on_insert();
CREATE OR REPLACE TRIGGER memories_tallies_delete AFTER DELETE ON memories
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION memory_tallies_on_delete();
CREATE OR REPLACE TRIGGER memories_tallies_update AFTER UPDATE ON memories
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION memory_tallies_on_update();
