-- BM25 candidates of the current transaction's user through the full-text GIN index.
--
-- Under row-level security PostgreSQL evaluates a qual that is not LEAKPROOF only after the
-- policy qual, so `search_vector @@ tsquery` (not leakproof) could never use the GIN index
-- `memories_user_fts`: the lexical step read all of the user's rows (10k rows: ~10-20 ms).
-- This function runs as the schema owner (RLS does not restrict it) and is therefore scoped by
-- hand: the user is read from `app.current_user_id` of the CURRENT transaction, never from an
-- argument, so a caller can only ever rank its own user's memories; with no user set it returns
-- nothing. Filters are typed arguments (NULL = no filter); deleted and archived rows never count.
--
-- Scoring is the BM25 of retrieval.py before this migration, unchanged: tf = positions of the
-- lexeme in the document, dl = number of lexemes, df = number of the user's live documents that
-- contain the lexeme (exact: every such document matches the OR query), N = the larger of the
-- matching documents and the user's live memory count, avgdl over the matching documents.
CREATE FUNCTION bm25_candidates(
    p_query          text,
    p_limit          integer,
    p_content_types  text[]      DEFAULT NULL,
    p_tags           text[]      DEFAULT NULL,
    p_min_importance real        DEFAULT NULL,
    p_context_id     text        DEFAULT NULL,
    p_created_after  timestamptz DEFAULT NULL,
    p_created_before timestamptz DEFAULT NULL,
    p_k1             float8      DEFAULT 1.2,
    p_b              float8      DEFAULT 0.75
)
RETURNS TABLE (id uuid, score float8)
LANGUAGE sql STABLE SECURITY DEFINER PARALLEL SAFE SET search_path = pg_catalog, public AS $$
    WITH matched AS MATERIALIZED (
        SELECT m.id, m.search_vector AS sv, length(m.search_vector)::float8 AS dl
        FROM public.memories m
        WHERE m.user_id = NULLIF(current_setting('app.current_user_id', true), '')
          AND m.search_vector @@ public.or_tsquery(p_query)
          AND NOT m.deleted AND NOT m.archived
          AND (p_content_types IS NULL OR m.content_type = ANY(p_content_types))
          AND (p_tags IS NULL OR m.tags && p_tags)
          AND (p_min_importance IS NULL OR m.importance >= p_min_importance)
          AND (p_context_id IS NULL OR m.context_id = p_context_id)
          AND (p_created_after IS NULL OR m.created_at >= p_created_after)
          AND (p_created_before IS NULL OR m.created_at <= p_created_before)
    ),
    d AS MATERIALIZED (
        SELECT matched.id, u.lexeme, coalesce(cardinality(u.positions), 1)::float8 AS tf, matched.dl
        FROM matched CROSS JOIN LATERAL unnest(matched.sv) AS u
        -- the query's lexemes once (an InitPlan): inline, to_tsvector ran once per unnested row
        WHERE u.lexeme = ANY((SELECT tsvector_to_array(to_tsvector('english', p_query)))::text[])
    ),
    df AS (SELECT lexeme, count(*)::float8 AS df FROM d GROUP BY lexeme),
    corpus AS (
        SELECT greatest(
                   (SELECT count(*) FROM matched),
                   coalesce((SELECT qu.memory_count FROM public.user_quotas qu
                             WHERE qu.user_id = NULLIF(current_setting('app.current_user_id', true), '')),
                            0)
               )::float8 AS n,
               greatest((SELECT avg(dl) FROM matched), 1) AS avgdl
    )
    SELECT d.id, sum(
               ln(1 + (corpus.n - df.df + 0.5) / (df.df + 0.5))
               * d.tf * (p_k1 + 1)
               / (d.tf + p_k1 * (1 - p_b + p_b * d.dl / corpus.avgdl))
           ) AS score
    FROM d JOIN df USING (lexeme) CROSS JOIN corpus
    GROUP BY d.id
    ORDER BY score DESC, d.id
    LIMIT greatest(p_limit, 0)
$$;

REVOKE ALL ON FUNCTION bm25_candidates(text, integer, text[], text[], real, text, timestamptz,
                                       timestamptz, float8, float8) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION bm25_candidates(text, integer, text[], text[], real, text, timestamptz,
                                          timestamptz, float8, float8) TO coda_app;
