-- Repeatable: applied by the migrator whenever this file changes (CREATE OR REPLACE).
-- A scheduled job step (see job_archive_batch.sql for how the jobs work).
--
-- Consolidation: fold near-duplicate live memories of a user into the earliest one.
-- One call takes at most p_limit entries of memory_consolidation_queue (memories stored or
-- re-worded since they were last compared; a trigger fills it), oldest memory first per user,
-- FOR UPDATE SKIP LOCKED. For each it looks, among the user's
-- live memories of the same content_type created before it, for those with cosine similarity
-- >= p_similarity (the 10 nearest by an exact scan of those rows -- memories has had no vector
-- index since migration 0030 -- then the threshold) and
-- picks the earliest whose words include every word of the candidate (the lexemes of the
-- full-text vector: stemmed, stop words out, numbers in): the survivor. The candidate then adds
-- nothing the survivor does not say. Sentence embeddings barely see which weekday, month,
-- number or adjective a template-like note has: on synthetic notes "Signed up for a chess
-- workshop in Berlin every Tuesday in March" and "... every Thursday in November" score 0.97,
-- "Dentist on March 24 at 9:30" and "... April 19 at 11:30" 0.98 -- different facts, which the
-- word check keeps apart (cosine alone merged 6.8% of 10k such notes at 0.95). The survivor gets the union of both tag lists (its own
-- first, at most p_max_tags), the higher importance and the summed access counts; the
-- candidate is superseded by the survivor (superseded_by, superseded_at: what an agent's
-- `supersedes` records too, so one concept covers both). Both get a history entry (survivor:
-- `updated` with an `absorbed` change; candidate: `superseded`) and a version. Every queue entry
-- taken is deleted, merged or not (a memory no longer searchable meanwhile is just dropped), so
-- a run only compares what was written since the last one and a second run changes nothing;
-- memories that are not merged are never rewritten. One audit row per user per batch. Returns
-- how many queue entries the batch took (the loop's stop signal).
--
-- The nearest-neighbour query is built per call with EXECUTE (planned with the user's value:
-- pruning to one partition and the HNSW index, see bm25_candidates.sql for why generic plans
-- are avoided on the partitioned table).
CREATE OR REPLACE FUNCTION job_consolidate_batch(p_similarity float8, p_limit integer,
                                                 p_max_tags integer DEFAULT 32,
                                                 p_request_id text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    n integer := 0;
    r record;
    s record;
    v_survivor uuid;
    v_tags text[];
    v_user text := NULL;
    v_checked integer := 0;
    v_merged integer := 0;
    v_version integer;
    v_changes jsonb;
BEGIN
    IF p_similarity IS NULL OR p_similarity <= 0 OR p_similarity > 1 OR p_limit IS NULL OR p_limit < 1 THEN
        RAISE EXCEPTION 'job_consolidate_batch: p_similarity must be in (0, 1] and p_limit >= 1';
    END IF;
    FOR r IN
        SELECT q.user_id, q.memory_id AS id, m.search_vector, m.content_type, m.embedding, m.created_at,
               public.memory_expired(m) AS expired, m.tags, m.importance, m.access_count,
               NOT public.memory_searchable(m) AS gone
        FROM public.memory_consolidation_queue q
        JOIN public.memories m ON m.user_id = q.user_id AND m.id = q.memory_id
        ORDER BY q.user_id, m.created_at, m.id
        LIMIT p_limit
        FOR UPDATE OF q, m SKIP LOCKED
    LOOP
        IF v_user IS DISTINCT FROM r.user_id THEN
            IF v_user IS NOT NULL AND v_merged > 0 THEN
                PERFORM public.write_audit(v_user, 'job:consolidation', 'consolidate', 'memories', NULL, 'ok',
                                           p_request_id, jsonb_build_object('merged', v_merged, 'checked', v_checked,
                                                                            'similarity', p_similarity));
            END IF;
            v_user := r.user_id;
            v_checked := 0;
            v_merged := 0;
        END IF;
        n := n + 1;
        DELETE FROM public.memory_consolidation_queue q WHERE q.user_id = r.user_id AND q.memory_id = r.id;
        CONTINUE WHEN r.gone;
        v_checked := v_checked + 1;
        v_survivor := NULL;
        IF NOT r.expired THEN
            EXECUTE
                'SELECT near.id FROM (
                     SELECT m.id, m.created_at, m.search_vector, m.embedding <=> $4 AS distance
                     FROM public.memories m
                     WHERE m.user_id = $1 AND m.content_type = $2 AND m.id <> $3
                       AND public.memory_searchable(m) AND NOT public.memory_expired(m)
                       AND (m.created_at, m.id) < ($5, $3)
                     ORDER BY m.embedding <=> $4
                     LIMIT 10
                 ) near
                 WHERE near.distance <= 1 - $6
                   AND $7 <@ tsvector_to_array(near.search_vector)
                 ORDER BY near.created_at, near.id
                 LIMIT 1'
            INTO v_survivor
            USING r.user_id, r.content_type, r.id, r.embedding, r.created_at, p_similarity,
                  tsvector_to_array(r.search_vector);
        END IF;
        CONTINUE WHEN v_survivor IS NULL;

        SELECT m.tags, m.importance, m.access_count INTO s
        FROM public.memories m WHERE m.user_id = r.user_id AND m.id = v_survivor FOR UPDATE;
        v_tags := ARRAY(
            SELECT t FROM (
                SELECT t, min(o) AS first FROM unnest(s.tags || r.tags) WITH ORDINALITY AS u(t, o) GROUP BY t
            ) x ORDER BY first LIMIT greatest(p_max_tags, 0));
        UPDATE public.memories m
        SET tags = v_tags, importance = greatest(m.importance, r.importance),
            access_count = m.access_count + r.access_count, version = m.version + 1, updated_at = now()
        WHERE m.user_id = r.user_id AND m.id = v_survivor
        RETURNING m.version INTO v_version;
        v_changes := jsonb_build_object('absorbed', jsonb_build_object('old', NULL, 'new', r.id));
        IF v_tags IS DISTINCT FROM s.tags THEN
            v_changes := v_changes || jsonb_build_object('tags', jsonb_build_object('old', s.tags, 'new', v_tags));
        END IF;
        IF r.importance > s.importance THEN
            v_changes := v_changes || jsonb_build_object(
                'importance', jsonb_build_object('old', s.importance, 'new', r.importance));
        END IF;
        IF r.access_count > 0 THEN
            v_changes := v_changes || jsonb_build_object(
                'access_count', jsonb_build_object('old', s.access_count, 'new', s.access_count + r.access_count));
        END IF;
        INSERT INTO public.memory_history (user_id, memory_id, version, action, actor, changes)
        VALUES (r.user_id, v_survivor, v_version, 'updated', 'job:consolidation', v_changes);

        UPDATE public.memories m
        SET superseded_by = v_survivor, superseded_at = now(),
            version = m.version + 1, updated_at = now()
        WHERE m.user_id = r.user_id AND m.id = r.id
        RETURNING m.version INTO v_version;
        INSERT INTO public.memory_history (user_id, memory_id, version, action, actor, changes)
        VALUES (r.user_id, r.id, v_version, 'superseded', 'job:consolidation',
                jsonb_build_object('superseded_by', jsonb_build_object('old', NULL, 'new', v_survivor)));
        v_merged := v_merged + 1;
    END LOOP;
    IF v_user IS NOT NULL AND v_merged > 0 THEN
        PERFORM public.write_audit(v_user, 'job:consolidation', 'consolidate', 'memories', NULL, 'ok',
                                   p_request_id, jsonb_build_object('merged', v_merged, 'checked', v_checked,
                                                                    'similarity', p_similarity));
    END IF;
    RETURN n;
END
$$;

REVOKE ALL ON FUNCTION job_consolidate_batch(float8, integer, integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION job_consolidate_batch(float8, integer, integer, text) TO coda_app;
