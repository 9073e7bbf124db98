-- What a user's memory holds, counted on write: GET /users/{user_id}/stats reads a few dozen
-- rows instead of every memory of the user (at 50,000 memories the exact scan cost ~120 ms of
-- PostgreSQL CPU; python -m bench.stats).
--
--   memory_tallies  one row per (user, facet, key): how many of the user's memories carry that
--                   key (functions/memory_tallies_sync.sql: memory_tally_keys says which keys a
--                   memory carries). Kept by statement triggers with transition tables in the
--                   writing transaction, whatever the path, like memory_vectors and the lexical
--                   statistics. Expiry is not in it (time passes without a write): memory_stats
--                   moves the few expired rows, found through memories_expiry, at read time.
--
-- Facets: state (deleted / archived / superseded / live), day (created, UTC, every memory not
-- deleted), and for searchable memories (functions/memory_searchable.sql) content_type,
-- source_type, tag and recall (never / one_to_four / five_plus by access_count).

CREATE TABLE memory_tallies (
    user_id text   NOT NULL,
    facet   text   NOT NULL,
    key     text   NOT NULL,
    n       bigint NOT NULL,
    PRIMARY KEY (user_id, facet, key)
);

-- Nobody reads or writes it but the SECURITY DEFINER triggers and memory_stats (as the owner).
ALTER TABLE memory_tallies ENABLE ROW LEVEL SECURITY;
ALTER TABLE memory_tallies FORCE ROW LEVEL SECURITY;
DO $$
BEGIN
    EXECUTE format('CREATE POLICY memory_tallies_owner ON memory_tallies TO %I USING (true) WITH CHECK (true)',
                   current_user);
END
$$;
REVOKE ALL ON memory_tallies FROM PUBLIC;

-- Backfill: an existing database's memories, counted by the keys as defined at this version
-- (the triggers use functions/memory_tallies_sync.sql from here on; a test checks the two agree).
INSERT INTO memory_tallies (user_id, facet, key, n)
SELECT k.user_id, k.facet, k.key, count(*)
FROM memories m
CROSS JOIN LATERAL (
    SELECT m.user_id, 'state' AS facet,
           CASE WHEN m.deleted THEN 'deleted' WHEN m.archived THEN 'archived'
                WHEN m.superseded_by IS NOT NULL THEN 'superseded' ELSE 'live' END AS key
    UNION ALL
    SELECT m.user_id, 'day', to_char(m.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') WHERE NOT m.deleted
    UNION ALL
    SELECT m.user_id, v.facet, v.key
    FROM (VALUES ('content_type', m.content_type), ('source_type', m.source_type),
                 ('recall', CASE WHEN m.access_count = 0 THEN 'never' WHEN m.access_count < 5 THEN 'one_to_four'
                                 ELSE 'five_plus' END)) AS v(facet, key)
    WHERE NOT m.deleted AND NOT m.archived AND m.superseded_by IS NULL
    UNION ALL
    SELECT m.user_id, 'tag', t.tag FROM (SELECT DISTINCT unnest(m.tags) AS tag) t
    WHERE NOT m.deleted AND NOT m.archived AND m.superseded_by IS NULL
) k
GROUP BY 1, 2, 3;

ANALYZE memory_tallies;
