-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
--
-- Per-user graphs over memory_vectors (migration 0030). A user with at least p_min searchable
-- memories gets an HNSW index of its own: a partial index on the partition that holds the user,
-- WHERE user_id = '<user>', so a search walks that user's vectors only, whatever else shares the
-- partition. A user below the threshold is scanned exactly by memory_nearest (~1 us per vector).
-- A graph whose user fell below p_min / 2 (archival, erasure) is dropped.
--
-- Run by the nightly archival job (usecases/jobs.py) and after bulk loads. CREATE INDEX here is
-- not CONCURRENTLY (a function runs in a transaction): it blocks writes to that one partition
-- (1/32 of the users) for the build, ~0.3 s per 2,000 vectors on this project's machine.
-- Returns what it did, one row per user.
CREATE OR REPLACE FUNCTION memory_vector_graphs_sync(p_min integer DEFAULT 2000, p_limit integer DEFAULT 100)
RETURNS TABLE (graph_user text, action text, vectors bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $fn$
DECLARE
    r      record;
    v_part regclass;
    v_name text;
BEGIN
    -- the searchable count per user, without a scan: the lexical totals (same definition)
    FOR r IN
        SELECT t.user_id AS uid, t.docs FROM public.memory_lexicon_totals t
        WHERE t.docs >= p_min
          AND NOT EXISTS (SELECT 1 FROM public.memory_vector_graphs g WHERE g.user_id = t.user_id)
        ORDER BY t.docs DESC, t.user_id
        LIMIT p_limit
    LOOP
        SELECT v.tableoid::regclass INTO v_part FROM public.memory_vectors v WHERE v.user_id = r.uid LIMIT 1;
        CONTINUE WHEN v_part IS NULL;
        v_name := 'memory_vectors_g_' || md5(r.uid);
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING hnsw (embedding halfvec_cosine_ops) '
                       'WITH (m = 16, ef_construction = 64) WHERE user_id = %L', v_name, v_part, r.uid);
        INSERT INTO public.memory_vector_graphs (user_id, index_name, vectors) VALUES (r.uid, v_name, r.docs);
        graph_user := r.uid; action := 'created'; vectors := r.docs;
        RETURN NEXT;
    END LOOP;
    FOR r IN
        SELECT g.user_id AS uid, g.index_name, coalesce(t.docs, 0) AS docs
        FROM public.memory_vector_graphs g LEFT JOIN public.memory_lexicon_totals t ON t.user_id = g.user_id
        WHERE coalesce(t.docs, 0) < p_min / 2
        ORDER BY g.user_id
        LIMIT p_limit
    LOOP
        EXECUTE format('DROP INDEX IF EXISTS %I', r.index_name);
        DELETE FROM public.memory_vector_graphs g WHERE g.user_id = r.uid;
        graph_user := r.uid; action := 'dropped'; vectors := r.docs;
        RETURN NEXT;
    END LOOP;
END
$fn$;

REVOKE ALL ON FUNCTION memory_vector_graphs_sync(integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION memory_vector_graphs_sync(integer, integer) TO coda_app;
