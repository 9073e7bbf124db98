-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
--
-- The vector step of a search: the p_limit memories of the current user nearest to p_query by
-- cosine distance (a memory scores by its nearest piece), among those that pass
-- memory_visible(m, p_filters) (filters and expiry), read from memory_vectors (searchable
-- memories only, migration 0030). Its cost follows this user's vectors, never the other users
-- of the partition:
--   * a user with a graph of its own (memory_vector_graphs_sync) walks it (hnsw.ef_search 200,
--     500 past 20,000 searchable memories; iterative scan until p_limit visible memories are found);
--   * any other user is scanned exactly: each vector by primary key, top-N sort, then only the
--     p_limit nearest are looked up in memories (by primary key) for visibility;
--   * if that came back short while the user has more searchable memories (a selective filter,
--     expired memories), the exact scan runs once more with visibility checked on every row.
-- The walk is planned per call with the user's id written in as a literal (format %L), so the
-- planner matches the user's partial graph index; the exact scans are planned once per
-- connection (generic plans, pruned to the user's partition when they start: a custom plan per
-- call cost more planning than a small user's scan). SECURITY INVOKER: as coda_app row-level
-- security applies on top.
DROP FUNCTION IF EXISTS memory_nearest(halfvec, integer, search_filters);

CREATE FUNCTION memory_nearest(p_query halfvec, p_limit integer, p_filters search_filters DEFAULT NULL)
RETURNS TABLE (id uuid, distance float8)
LANGUAGE plpgsql STABLE
SET hnsw.ef_search = 200
SET hnsw.iterative_scan = 'relaxed_order'
-- a user with a graph: walk it, never sort all its vectors (the planner prefers the sort for a
-- few hundred rows); where no graph exists the sort is the only plan and stays
SET enable_sort = off
SET enable_indexscan = on  -- restored at exit: the exact scan below turns it off for itself
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    v_user     text    := NULLIF(current_setting('app.current_user_id', true), '');
    -- any attribute set (a filter the vectors alone cannot apply)
    v_filtered boolean := p_filters IS NOT NULL
                          AND EXISTS (SELECT 1 FROM jsonb_each(to_jsonb(p_filters)) e WHERE e.value <> 'null'::jsonb);
    v_ids      uuid[];
    v_dist     float8[];
    v_docs     bigint;
    v_graph    integer;
BEGIN
    IF v_user IS NULL OR coalesce(p_limit, 0) < 1 THEN
        RETURN;
    END IF;
    -- the user's searchable memories now, not the graph's size when it was built (a user that
    -- grew from 2,500 to 50,000 memories kept the narrow beam: 98.05% of the exact top 50)
    SELECT g.vectors, t.docs INTO v_graph, v_docs
    FROM public.memory_vector_graphs g LEFT JOIN public.memory_lexicon_totals t ON t.user_id = g.user_id
    WHERE g.user_id = v_user;
    IF v_graph IS NOT NULL THEN
        -- a wider beam for very large graphs: 200 finds 99.5% of the exact top 50 at 10,000
        -- vectors but 98.1-98.5% at 50,000, 400 98.9-99.3%, 500 99.05-99.5% (two graphs of the
        -- same 50,000 bench/tenants.py memories); the setting ends with the call
        IF coalesce(v_docs, v_graph) > 20000 THEN
            PERFORM set_config('hnsw.ef_search', '500', true);
        END IF;
        EXECUTE format(
            'SELECT array_agg(n.memory_id ORDER BY n.d, n.memory_id), array_agg(n.d ORDER BY n.d, n.memory_id)
             FROM (SELECT w.memory_id, min(w.d) AS d FROM (
                       SELECT v.memory_id, (v.embedding <=> $1)::float8 AS d
                       FROM public.memory_vectors v
                       -- each vector the walk yields checked by primary key (OFFSET 0: as a
                       -- join, a planner that misjudged the user read all its rows instead)
                       CROSS JOIN LATERAL (SELECT 1 FROM public.memories m
                                           WHERE m.user_id = %1$L AND m.id = v.memory_id
                                             AND public.memory_visible(m, $2) OFFSET 0) m
                       WHERE v.user_id = %1$L
                       ORDER BY v.embedding <=> $1 LIMIT $3) w
                   GROUP BY w.memory_id) n', v_user)
        INTO v_ids, v_dist USING p_query, p_filters, p_limit;
    ELSIF NOT v_filtered THEN
        -- the user's vectors read page by page (bitmap heap scan) rather than one heap access
        -- per vector: 1,000 vectors 0.63 instead of 0.85 ms (the plan is cached with this setting)
        PERFORM set_config('enable_indexscan', 'off', true);
        SELECT array_agg(n.memory_id ORDER BY n.d, n.memory_id), array_agg(n.d ORDER BY n.d, n.memory_id)
        INTO v_ids, v_dist
        FROM (SELECT w.memory_id, min(w.d) AS d FROM (
                  SELECT v.memory_id, (v.embedding <=> p_query)::float8 AS d
                  FROM public.memory_vectors v WHERE v.user_id = v_user
                  ORDER BY 2, 1 LIMIT p_limit) w  -- ties by id: the same answer whatever the scan order
              -- one primary-key lookup per nearest vector (OFFSET 0: a subquery per row; as a
              -- join, the generic plan read every row of the user into a hash table)
              CROSS JOIN LATERAL (SELECT * FROM public.memories m
                                  WHERE m.user_id = v_user AND m.id = w.memory_id OFFSET 0) m
              WHERE public.memory_visible(m, p_filters)
              GROUP BY w.memory_id) n;
    END IF;
    IF coalesce(cardinality(v_ids), 0) < p_limit THEN
        SELECT t.docs INTO v_docs FROM public.memory_lexicon_totals t WHERE t.user_id = v_user;
        IF coalesce(v_docs, 0) > coalesce(cardinality(v_ids), 0) THEN
            SELECT array_agg(n.memory_id ORDER BY n.d, n.memory_id), array_agg(n.d ORDER BY n.d, n.memory_id)
            INTO v_ids, v_dist
            FROM (SELECT v.memory_id, min((v.embedding <=> p_query)::float8) AS d
                  FROM public.memory_vectors v
                  JOIN public.memories m ON m.user_id = v.user_id AND m.id = v.memory_id
                  WHERE v.user_id = v_user AND public.memory_visible(m, p_filters)
                  GROUP BY v.memory_id ORDER BY 2, 1 LIMIT p_limit) n;
        END IF;
    END IF;
    RETURN QUERY SELECT u.id, u.distance FROM unnest(v_ids, v_dist) AS u(id, distance);
END
$fn$;

REVOKE ALL ON FUNCTION memory_nearest(halfvec, integer, search_filters) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory_nearest(halfvec, integer, search_filters) TO coda_app;
