-- bm25_candidates (0003), same signature, same scores, ~2x faster on queries with common words
-- (measured on 100k rows, a query matching 1,243 of the user's 10k memories: 8.9 -> 4.7 ms; one
-- matching 408: 2.6 -> 1.5 ms). Scoping, arguments and grants are unchanged (CREATE OR REPLACE
-- keeps the ACL: EXECUTE for coda_app only).
CREATE OR REPLACE FUNCTION bm25_candidates(
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
    -- d: one row per (matching document, query lexeme it contains). setweight marks the query's
    -- lexemes 'A' (to_tsvector writes only 'D'), ts_filter keeps just those, so unnest expands
    -- 1-3 entries per document instead of all ~12 (the full unnest was 2/3 of the cost); the
    -- set-returning call sits in the target list (no per-row function scan).
    WITH d AS MATERIALIZED (
        SELECT x.id, x.dl, (x.u).lexeme AS lexeme,
               coalesce(cardinality((x.u).positions), 1)::float8 AS tf
        FROM (
            SELECT m.id, length(m.search_vector)::float8 AS dl,
                   unnest(ts_filter(setweight(m.search_vector, 'A',
                                              (SELECT tsvector_to_array(to_tsvector('english', p_query)))::text[]),
                                    '{a}')) AS u
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
        ) x
    ),
    docs AS (SELECT count(*)::float8 AS n, avg(dl) AS avgdl FROM (SELECT DISTINCT ON (id) dl FROM d) y),
    df AS (SELECT lexeme, count(*)::float8 AS df FROM d GROUP BY lexeme),
    corpus AS (
        SELECT greatest(
                   docs.n,
                   coalesce((SELECT qu.memory_count FROM public.user_quotas qu
                             WHERE qu.user_id = NULLIF(current_setting('app.current_user_id', true), '')),
                            0)
               )::float8 AS n,
               greatest(docs.avgdl, 1) AS avgdl
        FROM docs
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
